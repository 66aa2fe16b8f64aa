"""render_report / render_html / report_rows on a hand-made evaluation state."""
import json

from xtuner_ext.evaluation.report import (loss_svg, metric_deltas, render_html, render_report, render_summary,
                                          report_rows, write_report)


def stage(name, iteration, answers, rouge, choice):
    metrics = dict(rouge_l=rouge, bleu=None, distinct_1=1.0, distinct_2=1.0, mean_length=3.0, copy_rate=None,
                   choice_accuracy=choice)
    return dict(name=name, iter=iteration, seconds=0.1, answers=answers, choice_scores={'h:1': [-1.0, -2.0]},
                metrics={'heldout': metrics})


STATE = dict(
    items=[dict(id='h:1', split='heldout', image=None, question='讲个梗', reference='太阳加班'),
           dict(id='h:2', split='heldout', image=None, question='讲个梗', reference='月亮请假')],
    stages=[stage('before', 0, {'h:1': '乱码', 'h:2': '乱码'}, 0.25, 0.5),
            stage('after', 10, {'h:1': '太阳加班', 'h:2': '月亮|请假'}, 0.75, 1.0)],
    loss=[[1, 6.0], [5, 3.0], [10, 1.5]])


def test_deltas_are_last_minus_first():
    deltas = metric_deltas(STATE)['heldout']
    assert deltas['rouge_l'] == (0.25, 0.75, 0.5)
    assert deltas['choice_accuracy'] == (0.5, 1.0, 0.5)
    assert deltas['bleu'] == (None, None, None)


def test_markdown_has_metric_deltas_and_every_answer_side_by_side():
    text = render_report(STATE)
    assert '| rouge_l | 0.250 | 0.750 | +0.500 |' in text
    assert '| bleu | – | – | – |' in text
    assert '| heldout |  | 讲个梗 | 月亮请假 | 乱码 | 月亮\\|请假 |' in text  # a | in an answer is escaped
    assert 'training loss: 6.000 at iteration 1 -> 1.500 at iteration 10 (3 points)' in text


def test_one_stage_shows_no_delta():
    text = render_report(dict(STATE, stages=STATE['stages'][:1]))
    assert '| rouge_l | 0.250 |\n' in text and 'delta' not in text


def test_rows_one_per_item_and_stage():
    rows = report_rows(STATE)
    assert [(r['stage'], r['id']) for r in rows] == [('before', 'h:1'), ('before', 'h:2'), ('after', 'h:1'),
                                                    ('after', 'h:2')]
    assert rows[2]['answer'] == '太阳加班' and rows[2]['choice_scores'] == [-1.0, -2.0]


def test_html_is_self_contained_and_escaped():
    page = render_html(dict(STATE, items=[dict(STATE['items'][0], question='<b>梗</b>')] + STATE['items'][1:]),
                       {'h:1': 'data:image/jpeg;base64,AAAA'})
    assert '&lt;b&gt;梗&lt;/b&gt;' in page and '<b>梗</b>' not in page
    assert '<svg' in page and 'data:image/jpeg;base64,AAAA' in page
    assert 'http://' not in page.replace('http://www.w3.org/2000/svg', '') and 'https://' not in page
    assert 'class="up">+0.500' in page


def test_loss_svg_needs_two_points():
    assert '<svg' not in loss_svg([[1, 2.0]])
    assert loss_svg([[1, 2.0], [2, 1.0]]).count('<polyline') == 1


def test_written_files_and_summary(tmp_path):
    page = write_report(tmp_path, STATE, {})
    assert page == tmp_path / 'before_after.html' and page.is_file()
    assert len((tmp_path / 'before_after.jsonl').read_text(encoding='utf-8').splitlines()) == 4
    assert json.loads((tmp_path / 'before_after_metrics.json').read_text())['after']['iter'] == 10
    summary = render_summary(tmp_path)
    assert str(page) in summary
    assert 'heldout  rouge_l             0.250    0.750   +0.500' in summary
    assert not list(tmp_path.glob('.*tmp*'))  # no temporary file left behind
