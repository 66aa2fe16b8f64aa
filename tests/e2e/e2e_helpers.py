"""Shared by the end-to-end flow tests: run a command and fail with its output's tail."""
import subprocess


def run(command, env, cwd):
    result = subprocess.run([str(c) for c in command], env=env, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def before_after_report(work_dir, expected_ids, last_iter):
    """Check the BeforeAfterChatHook report of a finished run: every expected item (``expected_ids``:
    the ids, or a split -> count dict when ids are content hashes) has a string answer
    at 'before' (iteration 0) and 'after' (``last_iter``), the markdown shows each metric's delta, the
    scalars reached the visualizer; returns the metrics per stage."""
    import json
    from pathlib import Path

    work_dir = Path(work_dir)
    rows = [json.loads(line) for line in (work_dir / 'before_after.jsonl').read_text(encoding='utf-8').splitlines()]
    for stage, iteration in (('before', 0), ('after', last_iter)):
        got = {r['id']: r for r in rows if r['stage'] == stage}
        if isinstance(expected_ids, dict):
            assert {s: sum(r['split'] == s for r in got.values()) for s in expected_ids} == expected_ids, stage
            assert len(got) == sum(expected_ids.values()), stage
        else:
            assert set(got) == set(expected_ids), stage
        assert all(r['iter'] == iteration and isinstance(r['answer'], str) for r in got.values()), stage
    metrics = json.loads((work_dir / 'before_after_metrics.json').read_text(encoding='utf-8'))
    assert list(metrics)[0] == 'before' and list(metrics)[-1] == 'after'
    markdown = (work_dir / 'before_after.md').read_text(encoding='utf-8')
    for split, after in metrics['after']['metrics'].items():
        before = metrics['before']['metrics'][split]
        for name in ('mean_length', 'distinct_1'):
            assert f'| {name} | {before[name]:.3f} | {after[name]:.3f} | {after[name] - before[name]:+.3f} |' in markdown
    assert (work_dir / 'before_after.html').is_file()
    scalars = '\n'.join(p.read_text(encoding='utf-8') for p in work_dir.glob('*/vis_data/scalars.json'))
    assert '"before_after/' in scalars and len(list(work_dir.glob('*/vis_data/events.out.tfevents.*'))) == 1
    return metrics
