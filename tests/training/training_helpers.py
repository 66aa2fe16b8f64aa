"""Shared helpers of the training tests (plain functions; fixtures live in conftest.py)."""
IGNORE = -100
LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
NF4 = dict(quant_type='nf4', double_quant=True, compute_dtype='auto', skip_modules=['lm_head'])


def lora(r: int = 4, dropout: float = 0.0) -> dict:
    return dict(r=r, lora_alpha=2 * r, lora_dropout=dropout, target_modules=list(LORA_TARGETS), task_type='CAUSAL_LM')


def official_num_tiles(width: int, height: int, min_num: int, max_num: int, image_size: int = 448,
                       use_thumbnail: bool = True) -> int:
    """Tile count of the official InternVL2 ``dynamic_preprocess`` (model card code, restated here so
    the project's ``num_tiles_for_size`` is checked against something it did not compute)."""
    aspect_ratio = width / height
    target_ratios = sorted({(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                            for j in range(1, n + 1) if min_num <= i * j <= max_num}, key=lambda x: x[0] * x[1])
    best_diff, best = float('inf'), (1, 1)
    for ratio in target_ratios:
        diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and width * height > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    blocks = best[0] * best[1]
    return blocks + 1 if use_thumbnail and blocks != 1 else blocks


def label_runs(labels):
    """[(start, end)] of the maximal runs of positions whose label is not IGNORE."""
    runs, start = [], None
    for i, value in enumerate(list(labels) + [IGNORE]):
        if value != IGNORE and start is None:
            start = i
        elif value == IGNORE and start is not None:
            runs.append((start, i))
            start = None
    return runs
