"""Write the embedded CLoT-style sample set (CLoT_cn_2000 layout) and its held-out split.

    python tools/make_sample_data.py OUT_DIR [--records 48] [--seed 0] [--heldout-count 8] [--overwrite]

OUT_DIR gets ex_cn.json, ex_images/, train.json, heldout.json and split_meta.json; use
data_root = OUT_DIR in a config (image_folder = data_root).
"""
import argparse
import sys

from xtuner_ext.data.sample import JOKES, make_clot_sample


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--records", type=int, default=48, help=f"number of records, 1..{len(JOKES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-count", type=int, default=8, help="images held out in heldout.json")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    try:
        out = make_clot_sample(args.out_dir, args.records, args.seed, args.heldout_count, args.overwrite)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.records} records to {out}/ex_cn.json, images in {out}/ex_images, "
          f"split in {out}/train.json + heldout.json ({args.heldout_count} held out, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
