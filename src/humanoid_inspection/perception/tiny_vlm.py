"""Build a tiny randomly initialised Qwen2.5-VL checkpoint offline (for tests and benches).

The checkpoint has the real layout (config.json with model_type qwen2_5_vl, safetensors
weights, a byte-level BPE tokenizer with the Qwen special tokens, a Qwen2VL image processor
config and a ChatML chat template), so it exercises the backend's real loading path; its
~120K parameters make generate() take milliseconds on a CPU. Its answers are random tokens.
"""

from pathlib import Path

SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>',
                  '<|vision_end|>', '<|image_pad|>', '<|video_pad|>', '<think>', '</think>')
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_CORPUS = ('[{"bbox_2d": [120, 48, 260, 190], "label": "housing"}] '
           '[{"points": [[312, 207]], "label": "grasp"}] system user assistant '
           'You are a helpful assistant. Locate every die-cast part on the table.')


def build_tiny_checkpoint(out_dir, seed: int = 0, chat_template: bool = True,
                          min_pixels: int = 56 * 56, max_pixels: int = 112 * 112) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint to out_dir and return its path.

    Args:
        out_dir: target folder (created).
        seed: torch seed of the random weights.
        chat_template: save the ChatML chat template with the tokenizer.
        min_pixels, max_pixels: image processor limits saved in preprocessor_config.json.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig,
                              Qwen2_5_VLForConditionalGeneration)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([_CORPUS], trainers.BpeTrainer(
        vocab_size=300, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token='<|im_end|>', pad_token='<|endoftext|>',
        additional_special_tokens=list(SPECIAL_TOKENS[1:]))
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
            num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048,
            rope_parameters={'rope_type': 'default', 'rope_theta': 10000.0,
                             'mrope_section': [2, 1, 1]},
            bos_token_id=ids['<|endoftext|>'], eos_token_id=ids['<|im_end|>'],
            pad_token_id=ids['<|endoftext|>']),
        vision_config=dict(depth=2, hidden_size=32, out_hidden_size=32, num_heads=4,
                           intermediate_size=37, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
        image_token_id=ids['<|image_pad|>'], video_token_id=ids['<|video_pad|>'],
        vision_start_token_id=ids['<|vision_start|>'], vision_end_token_id=ids['<|vision_end|>'],
        bos_token_id=ids['<|endoftext|>'], eos_token_id=ids['<|im_end|>'],
        pad_token_id=ids['<|endoftext|>'])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels).save_pretrained(out)
    return out
