"""The InternVL2 conversation dataset for training, and its collate function.

Records come from any layout the loaders know (CLoT folder, Oogiri-GO jsonl, InternVL/LLaVA
json/jsonl), are validated once up front (a bad record stops training or is skipped and counted,
as ``on_bad_record`` says; never swapped for another), and are tiled and encoded by the model's
:class:`InternVL2Processor`, the same object ``chat()`` and the preflight check use.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import torch
from mmengine.logging import print_log
from PIL import Image
from torch.utils.data import Dataset

from xtuner_ext.data.loaders import load_any
from xtuner_ext.data.validate import BadRecordError, resolve_image_path, select_usable_records
from xtuner_ext.models.internvl2 import IGNORE_INDEX, InternVL2Processor, SampleTooLongError
from xtuner_ext.models.vision_cache import pixel_digest


class InternVL2ConversationDataset(Dataset):
    """Args:
        model_path: the InternVL2 folder whose tokenizer, template and tiling settings to use.
        data_path: a CLoT folder / ``ex_cn.json``, an Oogiri-GO jsonl or a conversation json/jsonl.
        image_folder: the folder image paths are relative to (a CLoT folder knows its own).
        max_length: token budget per sample; image tokens are never truncated.
        processor: overrides for the :class:`InternVL2Processor`, e.g. ``dict(max_dynamic_patch=6)``
            (the tutorial's tile limit); configs give the model the same dict.
        on_bad_record: ``'error'`` stops at load time, ``'skip'`` drops bad records with a count.
        repeat_times: whole passes over the data per epoch (an int).
    """

    def __init__(self, model_path: str, data_path: str, max_length: int, image_folder: Optional[str] = None,
                 processor: Optional[dict] = None, data_format: str = 'auto', on_bad_record: str = 'error',
                 repeat_times: int = 1):
        if int(repeat_times) != repeat_times or repeat_times < 1:
            raise ValueError(f'repeat_times must be a whole number >= 1, got {repeat_times}')
        self.processor = InternVL2Processor.from_pretrained(model_path, **(processor or {}))
        self.tokenizer = self.processor.tokenizer
        self.max_length = max_length

        loaded = load_any(str(data_path), image_folder, data_format)
        self.image_folder = loaded.image_folder
        # records the loader could not parse are reported (and counted) with the checked ones
        records, report = select_usable_records(loaded.records, self.image_folder, on_bad_record=on_bad_record,
                                                source=loaded.source, load_problems=loaded.problems)
        self.samples = self._encode_all(records, loaded.source, on_bad_record)
        # records, not problems: one record can have several (a broken image that is also a duplicate)
        self.skipped = len(report.bad_indices) + (len(records) - len(self.samples))
        if self.skipped:
            too_long = self.skipped - len(report.bad_indices)
            print_log(f'{loaded.source}: skipped {self.skipped} bad record(s) (on_bad_record="skip"): '
                      + '; '.join(filter(None, [report.first_problems(5),
                                                too_long and f'{too_long} that do not fit max_length={max_length}']))
                      + '; `python tools/check_data.py` lists them all', 'current', logging.WARNING)
        if not self.samples:
            raise ValueError(f'{loaded.source}: no usable records')
        self.truncated = sum(s['truncated'] for s in self.samples)
        if self.truncated:
            print_log(f'{loaded.source}: {self.truncated} of {len(self.samples)} sample(s) exceed max_length='
                      f'{max_length}; their answers were shortened (image tokens kept)', 'current', logging.WARNING)
        self.samples = self.samples * int(repeat_times)

    def _num_tiles(self, image_path: str) -> int:
        with Image.open(image_path) as image:
            return self.processor.num_tiles(image.size)

    def _encode_all(self, records: List[dict], source: str, on_bad_record: str) -> List[dict]:
        samples = []
        for record in records:
            image_path = None
            if record.get('image'):
                image_path, _ = resolve_image_path(record['image'], self.image_folder)
            try:
                tiles = self._num_tiles(image_path) if image_path else 0
                encoded = self.processor.encode(record, tiles, self.max_length)
            except SampleTooLongError as err:
                if on_bad_record == 'error':
                    raise BadRecordError(f'{source}:{record.get("source_index")}: would_truncate: {err}') from None
                continue
            samples.append(dict(input_ids=encoded.input_ids, labels=encoded.labels, image=image_path,
                                num_tiles=encoded.num_tiles, truncated=encoded.truncated))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def modality_length(self) -> List[int]:
        """Lengths for XTuner's LengthGroupedSampler; text-only samples are negative (grouped apart)."""
        return [len(s['input_ids']) if s['image'] else -len(s['input_ids']) for s in self.samples]

    @property
    def length(self) -> List[int]:
        return [len(s['input_ids']) for s in self.samples]

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        item = dict(input_ids=torch.tensor(sample['input_ids']), labels=torch.tensor(sample['labels']))
        if sample['image']:
            pixel_values = self.processor.pixel_values(sample['image'])
            if len(pixel_values) != sample['num_tiles']:
                raise RuntimeError(f'{sample["image"]} changed on disk since the dataset was built '
                                   f'({len(pixel_values)} tiles now, {sample["num_tiles"]} then)')
            item['pixel_values'] = pixel_values
            item['image_key'] = pixel_digest(pixel_values)  # the model's vision cache key (in the worker)
        return item


def image_batch_fields(instances: List[dict]) -> dict:
    """The tiles of all images in sample order, their flags, and per image its cache key and tile count."""
    images = [x for x in instances if 'pixel_values' in x]
    if not images:
        return {}
    fields = dict(pixel_values=torch.cat([x['pixel_values'] for x in images]))
    fields['image_flags'] = torch.ones(fields['pixel_values'].shape[0], dtype=torch.long)
    if all('image_key' in x for x in images):
        fields.update(image_keys=[x['image_key'] for x in images], image_tiles=[len(x['pixel_values']) for x in images])
    return fields


def internvl2_collate_fn(instances: List[dict], pad_token_id: int = 0) -> dict:
    """Right-pad a batch; tiles of all images are concatenated in sample order."""
    length = max(len(x['input_ids']) for x in instances)
    input_ids = torch.full((len(instances), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(instances), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(instances), length), dtype=torch.bool)
    for row, x in enumerate(instances):
        n = len(x['input_ids'])
        input_ids[row, :n], labels[row, :n], attention_mask[row, :n] = x['input_ids'], x['labels'], True
    data = dict(input_ids=input_ids, labels=labels, attention_mask=attention_mask, **image_batch_fields(instances))
    return dict(data=data, data_samples=None)
