"""MMBench / CCBench evaluation of InternVL2 and LLaVA models on the official TSV files (see :mod:`.cli`)."""
from .circular import CIRCULAR_OFFSET, rotate, with_rotations
from .compare import compare_results, render_comparison
from .extraction import Extraction, extract_option
from .prompts import INSTRUCTIONS, build_question, language_of
from .report import render_result
from .scoring import score
from .tsv import CorruptRow, MMBenchRow, MMBenchTable, decode_image, read_mmbench_tsv

__all__ = ['CIRCULAR_OFFSET', 'rotate', 'with_rotations', 'compare_results', 'render_comparison', 'Extraction',
           'extract_option', 'INSTRUCTIONS', 'build_question', 'language_of', 'render_result', 'score', 'CorruptRow',
           'MMBenchRow', 'MMBenchTable', 'decode_image', 'read_mmbench_tsv']
