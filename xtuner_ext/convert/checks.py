"""Proof that a converted folder is the trained model: QLoRA drift and a reload check.

Both run on held-out inputs with greedy decoding, so every difference comes from the weights:
- drift: the trained model (4-bit base + LoRA, as training saw it) against the merged
  full-precision model (logit difference and greedy-answer agreement);
- reload: the written folder, loaded by the native loader with its own config.json (tiling
  included), must answer exactly as the merged model in memory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import torch
from tqdm import tqdm

LOGIT_POSITIONS = 32  # the prompt's text tail (after the image), where the answer starts


@dataclass(frozen=True)
class Probe:
    image: Optional[str]
    question: str


@dataclass
class Outputs:
    answers: List[str]
    logits: List[torch.Tensor]  # per probe: [LOGIT_POSITIONS, vocab] in fp32


def probes_from(data_file: Path, image_folder: Optional[str], limit: int) -> List[Probe]:
    """The first ``limit`` records of a data file as (image, first question) probes."""
    from xtuner_ext.data.loaders import load_any

    loaded = load_any(str(data_file), image_folder)
    probes = []
    for record in loaded.records[:limit]:
        image = record.get('image')
        folder = Path(loaded.image_folder or Path(data_file).parent)
        probes.append(Probe(str(folder / image) if image else None, record['conversations'][0]['value']))
    if not probes:
        raise ValueError(f'{data_file} has no usable records to check the conversion on')
    return probes


def _inputs(model, processor, probe: Probe):
    pixel_values = None
    if probe.image is not None:
        vision_dtype = model.vision_model.embeddings.patch_embedding.weight.dtype
        pixel_values = processor.pixel_values(probe.image).to(model.device, vision_dtype)
    prompt = processor.prompt(probe.question, None, [len(pixel_values)] if pixel_values is not None else [])
    return pixel_values, prompt


@torch.no_grad()
def run_probes(model, processor, probes: List[Probe], generation_config: dict, desc: str = 'probes') -> Outputs:
    """Greedy answers and the prompt-tail logits of an ``InternVLChatModel`` (plain or with LoRA)."""
    model.eval()
    model.img_context_token_id = processor.img_context_token_id
    answers, logits = [], []
    for probe in tqdm(probes, desc=desc, unit='input', leave=False):
        pixel_values, prompt = _inputs(model, processor, probe)
        ids = processor.tokenizer(prompt, return_tensors='pt')['input_ids'].to(model.device)
        out = model(pixel_values=pixel_values, input_ids=ids).logits
        logits.append(out[0, -LOGIT_POSITIONS:].float().cpu())
        answers.append(model.generate_text(processor.tokenizer, [prompt], pixel_values, generation_config)[0])
    return Outputs(answers, logits)


@dataclass
class Comparison:
    samples: int
    max_logit_diff: float
    mean_logit_diff: float
    answers_agree: int

    @property
    def agreement(self) -> float:
        return self.answers_agree / self.samples

    def to_dict(self) -> dict:
        return dict(asdict(self), agreement=self.agreement)


def compare(reference: Outputs, other: Outputs) -> Comparison:
    diffs = [(a - b).abs() for a, b in zip(reference.logits, other.logits)]
    return Comparison(samples=len(diffs), max_logit_diff=max(float(d.max()) for d in diffs),
                      mean_logit_diff=sum(float(d.mean()) for d in diffs) / len(diffs),
                      answers_agree=sum(a == b for a, b in zip(reference.answers, other.answers)))
