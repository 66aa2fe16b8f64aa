"""The internlm2-chat template and the shared prompt builder."""
import pytest

from xtuner_ext.models.internvl2 import INTERNVL_SYSTEM_MESSAGE, build_chat_prompt, get_template

SYSTEM = '<|im_start|>system\n' + INTERNVL_SYSTEM_MESSAGE + '<|im_end|>'


def test_text_only_prompt():
    assert build_chat_prompt('hi') == SYSTEM + '<|im_start|>user\nhi<|im_end|><|im_start|>assistant\n'


def test_multi_turn_prompt_keeps_history_and_places_image_once():
    prompt = build_chat_prompt('and now?', history=[('<image>\nwhat?', 'a cat')], num_patches_list=[1],
                               num_image_token=2)
    image = '<img>' + '<IMG_CONTEXT>' * 2 + '</img>'
    assert prompt == (SYSTEM + '<|im_start|>user\n' + image + '\nwhat?<|im_end|><|im_start|>assistant\na cat'
                      '<|im_end|><|im_start|>user\nand now?<|im_end|><|im_start|>assistant\n')


def test_image_tag_added_only_on_a_first_turn_with_an_image():
    with_image = build_chat_prompt('q', num_patches_list=[3], num_image_token=1)
    assert '<|im_start|>user\n<img>' + '<IMG_CONTEXT>' * 3 + '</img>\nq<|im_end|>' in with_image
    assert '<img>' not in build_chat_prompt('q', history=[], num_patches_list=[3], num_image_token=1)


def test_two_images_fill_their_tags_in_order():
    prompt = build_chat_prompt('Image-1: <image>\nImage-2: <image>\ncompare', num_patches_list=[1, 2],
                               num_image_token=1)
    assert 'Image-1: <img><IMG_CONTEXT></img>\nImage-2: <img><IMG_CONTEXT><IMG_CONTEXT></img>\ncompare' in prompt


def test_custom_system_message_and_other_templates():
    assert build_chat_prompt('hi', system_message='be brief').startswith('<|im_start|>system\nbe brief<|im_end|>')
    assert get_template('phi3-chat').render([('hi', None)]).endswith('<|end|><|user|>\nhi<|end|><|assistant|>\n')
    with pytest.raises(ValueError, match="'nope' is not supported"):
        get_template('nope')
