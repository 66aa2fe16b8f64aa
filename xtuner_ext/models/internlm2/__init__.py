"""Native InternLM2 (official layout, no remote code) as transformers' ``LlamaForCausalLM``."""
from .checkpoint import internlm2_state_dict, llama_state_dict, read_internlm2_config
from .modeling import build_internlm2, internlm2_tokenizer, load_internlm2, save_internlm2

__all__ = ['build_internlm2', 'load_internlm2', 'save_internlm2', 'internlm2_tokenizer', 'llama_state_dict',
           'internlm2_state_dict', 'read_internlm2_config', 'make_tiny_internlm2']


def __getattr__(name):
    if name == 'make_tiny_internlm2':  # pulls in the tokenizer trainer; only when asked for
        from .tiny import make_tiny_internlm2
        return make_tiny_internlm2
    raise AttributeError(name)
