"""mmengine hooks xtuner_ext adds to training runs."""
from xtuner_ext.engine.random_state_hook import RandomStateHook
from xtuner_ext.engine.run_start_hook import RunStartHook

__all__ = ['RandomStateHook', 'RunStartHook']
