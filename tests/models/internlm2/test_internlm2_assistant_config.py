"""The tiny assistant config builds stock XTuner's SupervisedFinetune on a 4-bit native InternLM2
(no remote code) and its dataset encodes the generated OpenAI `messages` data."""
from pathlib import Path

import bitsandbytes as bnb
from mmengine.config import Config

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures'

TINY = FIXTURES.parents[1] / 'configs' / 'internlm2' / 'internlm2_tiny_qlora_assistant.py'


def test_tiny_config_builds_qlora_on_native_internlm2(tiny_internlm2_dir, tmp_path, monkeypatch):
    from xtuner.registry import BUILDER
    from mmengine.registry import DATASETS

    import xtuner_ext  # noqa: F401
    from xtuner_ext.data.assistant import write_assistant_data

    write_assistant_data(str(tmp_path / 'personal_assistant.json'), 'Ada', count=20)
    monkeypatch.setenv('XTUNER_EXT_MODEL_PATH', str(tiny_internlm2_dir))
    monkeypatch.setenv('XTUNER_EXT_DATA_ROOT', str(tmp_path))
    config = Config.fromfile(str(TINY))
    model = BUILDER.build(config.model)
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.llm.modules()) == 2 * 7
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all('.lora_' in n for n in trainable)
    dataset = DATASETS.build(config.train_dataloader.dataset)
    assert len(dataset) >= 1 and all(len(s['input_ids']) <= config.max_length for s in dataset)
