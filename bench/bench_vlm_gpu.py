"""GPU benchmark: generate latency of a random model with MiMo-Embodied-7B's real dimensions.

No weights exist offline, so the model is a randomly initialised Qwen2_5_VLForConditionalGeneration
built straight on the GPU in bfloat16 (no CPU copy) with the dimensions of MiMo-Embodied-7B:
LLM = MiMo-7B (36 layers, hidden 4096, 32 heads, 8 KV heads, intermediate 11008, vocab 151680,
head_dim 128, mrope_section [16, 24, 24]); vision = Qwen2.5-ViT (32 blocks, hidden 1280,
16 heads, intermediate 3420, patch 14, window 112, full attention in blocks 7/15/23/31, out
4096). The input is the real pointing prompt on one 640x480 image through the backend's own
preprocessing (644x476 input, 391 image tokens); the tokenizer is the tiny offline one (the
token count of the text differs a little from the real tokenizer's; the image tokens, which
dominate, are exact). Timed: preprocessing, prefill (1 new token), full generate of
--new-tokens tokens (forced, min_new_tokens), the per-token decode time, parse, peak memory.

Refuses on a machine without CUDA. Usage: python bench/bench_vlm_gpu.py --out DIR
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src'))

MIMO_TEXT = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=36,
                 num_attention_heads=32, num_key_value_heads=8, vocab_size=151680,
                 max_position_embeddings=32768, rms_norm_eps=1e-5,
                 rope_parameters={'rope_type': 'default', 'rope_theta': 640000.0,
                                  'mrope_section': [16, 24, 24]})
QWEN25_VIT = dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420,
                  out_hidden_size=4096, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])


def main(argv=None) -> int:
    """Build, run, print and save the figures (DIR/vlm_gpu.json)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results'),
                        help='folder for vlm_gpu.json')
    parser.add_argument('--new-tokens', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cuda')
    args = parser.parse_args(argv)
    import torch
    if not torch.cuda.is_available() or not args.device.startswith('cuda'):
        print('bench_vlm_gpu: needs a CUDA GPU (a 7B bf16 model does not run usefully on a '
              'CPU); nothing was run. Run it on a GPU machine.', file=sys.stderr)
        return 2
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from humanoid_inspection.perception import vlm_prompts
    from humanoid_inspection.perception.synthetic_scene import (
        default_camera_pose, demo_parts, render_scene)
    from humanoid_inspection.perception.tiny_vlm import build_tiny_checkpoint
    from humanoid_inspection.perception.vlm_backend import (
        VlmBackend, VlmConfig, load_processor_parts)
    from humanoid_inspection.perception.vlm_parsing import VlmParseError, parse_points
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_checkpoint(Path(tmp) / 'tok', min_pixels=56 * 56,
                                     max_pixels=28 * 28 * 1280)
        tokenizer, image_processor, template, _ = load_processor_parts(str(tiny))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ('<|image_pad|>', '<|video_pad|>', '<|vision_start|>', '<|vision_end|>',
            '<|im_end|>', '<|endoftext|>')}
    config = Qwen2_5_VLConfig(
        text_config=dict(MIMO_TEXT, eos_token_id=ids['<|im_end|>'],
                         pad_token_id=ids['<|endoftext|>'], bos_token_id=ids['<|endoftext|>']),
        vision_config=QWEN25_VIT, image_token_id=ids['<|image_pad|>'],
        video_token_id=ids['<|video_pad|>'], vision_start_token_id=ids['<|vision_start|>'],
        vision_end_token_id=ids['<|vision_end|>'], eos_token_id=ids['<|im_end|>'],
        pad_token_id=ids['<|endoftext|>'], bos_token_id=ids['<|endoftext|>'])
    print('building a random MiMo-Embodied-7B-sized model on', device, flush=True)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with device:
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(f'{n_params / 1e9:.2f} B parameters, built in {build_s:.1f} s', flush=True)
    backend = VlmBackend.from_components(
        VlmConfig(device=args.device, dtype='bfloat16', max_new_tokens=args.new_tokens),
        model, tokenizer, image_processor, template)
    frame = render_scene(demo_parts(), default_camera_pose())
    prompt = vlm_prompts.grasp_point_prompt('housing')

    def sync():
        torch.cuda.synchronize(device)

    def run(new_tokens):
        t = time.perf_counter()
        prepared = backend.prepare(frame.color, prompt)
        t_prep = time.perf_counter() - t
        tensors = {k: v.to(device) for k, v in prepared.tensors.items()}
        tensors['pixel_values'] = tensors['pixel_values'].to(torch.bfloat16)
        sync()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**tensors, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False)
        sync()
        t_gen = time.perf_counter() - t
        text = tokenizer.decode(out[0, prepared.tensors['input_ids'].shape[1]:])
        t = time.perf_counter()
        try:
            parse_points(text, backend.coordinate_frame(prepared))
            outcome = 'parsed'
        except VlmParseError as exc:
            outcome = exc.kind.value
        t_parse = time.perf_counter() - t
        return prepared, t_prep, t_gen, t_parse, outcome, out.shape[1] - tensors[
            'input_ids'].shape[1]

    run(2)  # warm-up (kernels, allocator)
    torch.cuda.reset_peak_memory_stats(device)
    prefill = [run(1)[2] for _ in range(args.repeats)]
    full = [run(args.new_tokens) for _ in range(args.repeats)]
    prepared = full[-1][0]
    med = sorted(prefill)[len(prefill) // 2]
    gen = sorted(r[2] for r in full)[len(full) // 2]
    per_token = (gen - med) / max(1, args.new_tokens - 1)
    report = {
        'device': torch.cuda.get_device_name(device), 'dtype': 'bfloat16',
        'parameters': n_params, 'build_s': build_s,
        'input_tokens': int(prepared.tensors['input_ids'].shape[1]),
        'image_tokens': int((prepared.tensors['input_ids'] == backend.image_token_id).sum()),
        'resized_input': list(prepared.resized_size),
        'new_tokens': args.new_tokens, 'repeats': args.repeats,
        'preprocess_ms': 1e3 * sorted(r[1] for r in full)[len(full) // 2],
        'prefill_ms': 1e3 * med, 'generate_ms': 1e3 * gen,
        'decode_ms_per_token': 1e3 * per_token,
        'parse_ms': 1e3 * sorted(r[3] for r in full)[len(full) // 2],
        'parse_outcome_random_model': full[-1][4],
        'generated_tokens': int(full[-1][5]),
        'peak_memory_gib': torch.cuda.max_memory_allocated(device) / 2 ** 30,
        'baseline_note': 'prefill (1 token) is the baseline of the full generate in this run',
    }
    for k, v in report.items():
        print(f'{k:28s} {v:.2f}' if isinstance(v, float) else f'{k:28s} {v}')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'vlm_gpu.json').write_text(json.dumps(report, indent=2))
    print(f"saved {out / 'vlm_gpu.json'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
