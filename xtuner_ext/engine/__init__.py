"""mmengine hooks xtuner_ext adds to training runs."""
from xtuner_ext.engine.random_state_hook import RandomStateHook

__all__ = ['RandomStateHook']
