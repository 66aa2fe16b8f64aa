"""The tiny LLaVA configs build stock XTuner's LLaVAModel with a 4-bit native InternLM2 (no remote
code: the tiny folders have no .py files) and train exactly what each stage should."""
from pathlib import Path

import bitsandbytes as bnb
import pytest
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[3]
FINETUNE = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_qlora_lora_finetune.py'

PRETRAIN = REPO / 'configs' / 'llava' / 'llava_internlm2_tiny_clip_tiny_pretrain.py'


def build(config_path):
    from xtuner.registry import BUILDER

    import xtuner_ext  # noqa: F401

    config = Config.fromfile(str(config_path))
    config.model.pretrained_pth = None
    return BUILDER.build(config.model), config


def trainable_parts(model):
    return {name.split('.')[0] + ('.lora' if '.lora_' in name else '')
            for name, p in model.named_parameters() if p.requires_grad}


def test_pretrain_trains_only_the_projector(llava_env):
    model, _ = build(PRETRAIN)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.llm.modules())
    assert not list(Path(llava_env['XTUNER_EXT_MODEL_PATH']).glob('*.py'))
    assert trainable_parts(model) == {'projector'}


def test_finetune_trains_lora_on_both_towers_and_the_projector(llava_env):
    model, _ = build(FINETUNE)
    assert trainable_parts(model) == {'llm.lora', 'visual_encoder.lora', 'projector'}


def test_dataset_reads_the_tutorial_format(llava_env):
    from xtuner.registry import BUILDER

    config = Config.fromfile(str(FINETUNE))
    dataset = BUILDER.build(config.train_dataloader.dataset)
    assert len(dataset) == 40
    sample = dataset[0]
    assert -200 in sample['input_ids'] and tuple(sample['pixel_values'].shape) == (3, 28, 28)


def test_other_llm_builders_still_get_xtuners_probe():
    """The boot patch only skips XTuner's AutoConfig probe for xtuner_ext's own builders."""
    from xtuner.model import LLaVAModel

    model = LLaVAModel.__new__(LLaVAModel)  # the method needs no state
    with pytest.raises(OSError):
        model._dispatch_lm_model_cfg(Config(dict(
            type='transformers.AutoModelForCausalLM.from_pretrained',
            pretrained_model_name_or_path='/nonexistent/model'))._cfg_dict)
    ours = Config(dict(type='xtuner_ext.models.internlm2.build_internlm2',
                       pretrained_model_name_or_path='/nonexistent/model'))._cfg_dict
    assert model._dispatch_lm_model_cfg(ours) is ours
