"""`sample`: InterFaceGAN's generate_data.py at scale (codes + images, streamed, resumable).

InterFaceGAN's own spellings are accepted (`generate_data`, --model_name, --output_dir, --latent_codes_path,
-s/--latent_space_type, -I/--generate_image); -S/--generate_style has no equivalent and is refused in one line.
"""

from __future__ import annotations

import argparse

from ifgan_jax.cli.common import add_model_args, add_process_args, add_space_arg, model_options, process_options, refuse

STYLE_REFUSAL = ("InterFaceGAN's layer-wise style codes are not written here; for StyleGAN models wp.npy holds "
                 "each layer's W+ code (sample writes z.npy, w.npy and wp.npy)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", aliases=["generate_data"], help="sample latent codes and images to a directory")
    add_model_args(p, noise=True)
    p.add_argument("-n", "--num", type=int, default=None, help="number of samples (default: all of -i)")
    p.add_argument("-o", "--out", "--output_dir", dest="out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="sample i depends only on (seed, i)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per device step")
    p.add_argument("--images", choices=("png", "npy", "none"), default="png",
                   help="PNG files, one uint8 images.npy (large N), or none")
    p.add_argument("-I", "--no-images", "--generate_image", dest="images", action="store_const", const="none",
                   help="same as --images none (InterFaceGAN's -I/--generate_image also skips images)")
    p.add_argument("-i", "--codes", "--latent_codes_path", dest="codes",
                   help="synthesize these codes (.npy) instead of sampling")
    add_space_arg(p, "latent space of -i codes; without -i, Z is sampled and StyleGAN models also write w.npy "
                     "and wp.npy", interfacegan=True)
    p.add_argument("-S", "--generate_style", nargs=0, action=refuse(STYLE_REFUSAL),
                   help="InterFaceGAN's style codes: not available (refused)")
    p.add_argument("--overwrite", action="store_true", help="replace a directory holding a different run")
    p.add_argument("--score", metavar="PREDICTOR",
                   help="also score each image (fer, age, gender, brightness, stats, or several: fer,age,gender): "
                   "writes scores.npy and attributes.json in the same pass")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_process_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ifgan_jax.jobs import sample

    sample.run(args.out, num=args.num, seed=args.seed, batch_size=args.batch_size, image_format=args.images,
               codes_path=args.codes, codes_space=args.space, overwrite=args.overwrite, score=args.score,
               show_progress=not args.quiet, **model_options(args), **process_options(args))
    return 0
