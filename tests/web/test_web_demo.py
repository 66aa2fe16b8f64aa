"""`xtuner-ext web` served on a free localhost port and driven in Debian's headless chromium:
upload, ask, compare the page's answers with the native chat(); bad inputs; nothing off-host."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from web_helpers import native_chat

CHROMIUM = Path('/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--no-first-run', '--disable-sync']
MAX_NEW_TOKENS = 12
ANSWER_TIMEOUT_MS = 300_000
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason='needs Debian chromium: `make browser` installs it'),
]
sync_playwright = pytest.importorskip('playwright.sync_api').sync_playwright


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_until_served(process: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f'xtuner-ext web exited with {process.returncode}:\n{log.read_text()}')
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f'xtuner-ext web did not answer on {url} within {timeout} s:\n{log.read_text()}')


@pytest.fixture(scope='module')
def server(base_dir, finetuned_dir, web_sample_dir, tmp_path_factory):
    """The real command, as a user starts it, with a 1-megapixel upload limit for the huge-image check."""
    port, log = free_port(), tmp_path_factory.mktemp('web_server') / 'server.log'
    command = [sys.executable, '-m', 'xtuner_ext.cli', 'web', str(base_dir), str(finetuned_dir), '--examples',
               str(web_sample_dir / 'heldout.json'), '--port', str(port), '--device', 'cpu',
               '--max-new-tokens', str(MAX_NEW_TOKENS), '--max-image-pixels', '1000000']
    with open(log, 'w') as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        wait_until_served(process, url, log)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope='module')
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app, recording every URL it requests."""
    url, _ = server
    page = browser.new_page(viewport={'width': 1400, 'height': 900})
    page.requested = []
    page.on('request', lambda request: page.requested.append(request.url))
    page.goto(url)
    page.wait_for_selector('#ask')
    yield page
    page.close()


def upload(page, image: Path) -> None:
    page.locator('#image input[type=file]').set_input_files(str(image))
    page.wait_for_selector('#image img')


def ask(page, question: str, expect: str) -> str:
    page.locator('#question textarea').fill(question)
    page.locator('#ask').click()
    page.wait_for_function(f"document.querySelector('#status').innerText.includes({expect!r})",
                           timeout=ANSWER_TIMEOUT_MS)
    return page.locator('#status').inner_text()


WATCH_STREAM = """() => {
    window.seenTexts = [];
    new MutationObserver(() => {
        const bots = document.querySelectorAll('#chat-base [data-testid=bot]');
        const text = bots.length ? bots[bots.length - 1].innerText : null;
        if (text !== null && window.seenTexts[window.seenTexts.length - 1] !== text) window.seenTexts.push(text);
    }).observe(document.querySelector('#chat-base'), {subtree: true, childList: true, characterData: true});
}"""


def bot_messages(page, key: str) -> list:
    return page.locator(f'#chat-{key} [data-testid=bot]').all_inner_texts()


def test_page_answers_equal_native_chat(page, server, base_dir, finetuned_dir, web_sample_dir, heldout_record,
                                        tmp_path):
    image = web_sample_dir / heldout_record['image']
    questions = ['这张图片里有什么？', '再讲一个梗']
    upload(page, image)
    page.evaluate(WATCH_STREAM)  # every text the base column's answer shows while it grows
    for question in questions:
        ask(page, question, 'Answered by Base and Fine-tuned')
        if question == questions[0]:
            seen = page.evaluate('window.seenTexts')
    page.screenshot(path=str(tmp_path / 'web_demo.png'), full_page=True)

    expected_base = native_chat(base_dir, image, questions, MAX_NEW_TOKENS)
    expected_finetuned = native_chat(finetuned_dir, image, questions, MAX_NEW_TOKENS)
    assert expected_base != expected_finetuned  # the two columns really come from two models
    assert bot_messages(page, 'base') == expected_base
    assert seen[-1] == expected_base[0] and any(text and text != seen[-1] for text in seen), seen  # streamed
    assert bot_messages(page, 'finetuned') == expected_finetuned
    assert page.locator('#chat-base [data-testid=user]').all_inner_texts() == questions
    assert (tmp_path / 'web_demo.png').stat().st_size > 10_000
    off_host = [u for u in page.requested if not u.startswith(server[0]) and not u.startswith(('data:', 'blob:'))]
    assert off_host == []  # no CDN, fonts or telemetry: the page renders offline


def test_bad_inputs_give_messages_in_the_page(page, server, web_sample_dir, heldout_record, tmp_path):
    assert 'No picture' in ask(page, 'what is this?', 'Problem')
    huge = tmp_path / 'huge.png'
    Image.new('RGB', (1200, 1000), 'white').save(huge)
    upload(page, huge)
    assert '1200x1000 = 1.2 megapixels' in ask(page, 'what is this?', 'megapixels')
    upload(page, web_sample_dir / heldout_record['image'])
    assert 'The question is empty' in ask(page, '   ', 'question is empty')
    assert bot_messages(page, 'base') == [] and bot_messages(page, 'finetuned') == []
    assert 'Traceback' not in server[1].read_text()


def test_held_out_samples_fill_picture_and_question(page, heldout_record):
    page.locator('#samples tbody tr').first.click()
    page.wait_for_selector('#image img')
    question = heldout_record['conversations'][0]['value'].replace('<image>', '').strip()
    assert page.locator('#question textarea').input_value() == question


def test_missing_folder_is_shown_in_the_page(browser, base_dir, tmp_path):
    """In process: the base column works, the fine-tuned column says why it is empty."""
    from xtuner_ext.web.app import build_app
    from xtuner_ext.web.loading import load_slot

    missing = tmp_path / 'converted'
    app = build_app([load_slot('Base', base_dir), load_slot('Fine-tuned', missing)])
    port = free_port()
    app.launch(server_name='127.0.0.1', server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        page = browser.new_page()
        page.goto(f'http://127.0.0.1:{port}/')
        page.wait_for_selector('#model-finetuned')
        column = page.locator('#model-finetuned').inner_text()
        assert 'Not loaded' in column and f'model folder {missing} does not exist' in column
        assert 'does not exist' in page.locator('#status').inner_text()
    finally:
        app.close()
