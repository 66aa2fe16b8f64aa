"""The embedded default sample: a small CLoT-style meme set this project makes itself.

``make_clot_sample(out_dir)`` writes, in the CLoT_cn_2000 layout::

    out_dir/ex_cn.json            # JSON array, records exactly like the tutorial's (no id)
    out_dir/ex_images/*.jpg       # small drawn pictures, 64-320 px, varied aspect ratios
    out_dir/train.json            # held-out split by image (canonical records, with id)
    out_dir/heldout.json
    out_dir/split_meta.json

Pictures are simple shapes drawn with PIL; the jokes are our own short Chinese one-liners about
them. Everything is deterministic for a seed (same bytes on the same Pillow build).
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from .loaders import load_clot_folder
from .records import CLOT_HUMAN_VALUE, CLOT_PROMPT, GPT, HUMAN
from .split import split_by_image, write_split

# (drawing, joke). Each drawing is used three times with different colours and sizes.
JOKES: list[tuple[str, str]] = [
    ("sun", "太阳：我每天准时上班，你们却只会说我晒。"),
    ("sun", "这个太阳已经连续加班四十亿年了，还没拿到过一次年假。"),
    ("sun", "防晒霜的销售冠军，本人。"),
    ("moon", "月亮：今天只上半天班，剩下的半边请明天再来。"),
    ("moon", "它不是月亮，是夜空咬了一口的饼干。"),
    ("moon", "嫦娥搬走以后，这里的房租终于降了。"),
    ("box", "这是一个方块，它说自己不是内向，只是棱角太多。"),
    ("box", "快递员：这个包裹里装的是另一个包裹。"),
    ("box", "我的人生规划：先方后圆，目前进度百分之五十。"),
    ("triangle", "山：你们总说要翻过我，有没有问过我的意见？"),
    ("triangle", "这块三明治被切得太标准了，舍不得吃。"),
    ("triangle", "交通标志：前方有危险，但我也不知道是什么。"),
    ("stripes", "斑马线：别踩我，我也是要面子的。"),
    ("stripes", "这件条纹衫穿上以后，连影子都在排队。"),
    ("stripes", "信号满格，可惜是横着的。"),
    ("dots", "这些圆点在排队，据说前面有免费的无线网。"),
    ("dots", "我的存款，每一个点都是一块钱。"),
    ("dots", "瓢虫脱下了它的外套，原来里面全是扣子。"),
    ("traffic", "红绿灯：三个颜色我都亮过了，还是没人听我的。"),
    ("traffic", "黄灯：我存在的意义，就是让大家犹豫一秒。"),
    ("traffic", "这是一根会变脸的电线杆，川剧学得不错。"),
    ("face", "他笑了，因为他终于发现没有鼻子也能呼吸。"),
    ("face", "老板：周五下午的员工，表情就是这样。"),
    ("face", "别看了，这是我被早八支配之前的样子。"),
    ("house", "房子：首付我出了一个三角形，剩下的方块你们自己想办法。"),
    ("house", "这是我在游戏里买的房，现实里的还在画。"),
    ("house", "屋顶说它压力很大，因为下面住着一家人。"),
    ("tree", "圣诞树：今年我只负责站着，礼物请找别人。"),
    ("tree", "这棵树长得这么尖，是因为它想戳破天花板。"),
    ("tree", "植树节那天种的，现在终于会自己摆姿势了。"),
    ("rainbow", "彩虹：雨停了我才出来，你们就开始拍照。"),
    ("rainbow", "这是天空没洗干净的调色盘。"),
    ("rainbow", "七种颜色都来了，就是没人带伞。"),
    ("checker", "棋盘：下了这么多年棋，我一次都没赢过。"),
    ("checker", "地板砖太有个性，扫地机器人已经迷路三天了。"),
    ("checker", "黑白格子：我们不是对立，只是住得太近。"),
    ("cloud", "云：今天心情不好，先哭为敬。"),
    ("cloud", "这朵云在减肥，已经从积雨云瘦成了卷云。"),
    ("cloud", "天气预报说有云，果然只有这一朵。"),
    ("fish", "这条鱼游了三秒就忘了要去哪，干脆原地当一张图片。"),
    ("fish", "鱼：别问我为什么不说话，我在水里开着静音。"),
    ("fish", "今晚的晚饭正在看着你，请礼貌一点。"),
    ("ladder", "梯子：人生就是一步一个台阶，别问我终点在哪。"),
    ("ladder", "这是通往周末的梯子，可惜是画上去的。"),
    ("ladder", "爬到顶才发现，上面什么都没有，只有更高的梯子。"),
    ("eye", "它一直在看着你，因为你还没交作业。"),
    ("eye", "老师的第三只眼，专门用来发现传纸条的。"),
    ("eye", "这不是靶心，是一只一直没眨眼的眼睛。"),
]

SIZES = [(64, 64), (96, 160), (320, 120), (200, 200), (240, 180), (120, 300),
         (300, 100), (160, 96), (256, 256), (180, 240), (72, 288), (288, 72)]
PALETTE = [(230, 60, 50), (250, 200, 40), (60, 150, 80), (50, 100, 200), (140, 70, 160),
           (240, 140, 40), (30, 30, 30), (245, 245, 240), (120, 190, 230), (200, 120, 90)]


def _draw(kind: str, size: tuple[int, int], bg, fg, rng: random.Random) -> Image.Image:
    w, h = size
    image = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(image)
    m = min(w, h)
    cx, cy = w // 2, h // 2
    if kind in ("sun", "moon", "eye", "face"):
        r = m * 2 // 5
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        if kind == "moon":
            d.ellipse([cx - r // 2, cy - r, cx + r + r // 2, cy + r], fill=bg)
        elif kind == "eye":
            d.ellipse([cx - r // 3, cy - r // 3, cx + r // 3, cy + r // 3], fill=bg)
        elif kind == "face":
            e = max(r // 6, 1)
            for ex in (cx - r // 3, cx + r // 3):
                d.ellipse([ex - e, cy - r // 3 - e, ex + e, cy - r // 3 + e], fill=bg)
            d.arc([cx - r // 2, cy - r // 4, cx + r // 2, cy + r // 2], 20, 160, fill=bg, width=max(m // 40, 1))
    elif kind == "box":
        s = m * 3 // 10
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fg)
    elif kind in ("triangle", "tree"):
        d.polygon([(cx, h // 10), (w // 10, h * 8 // 10), (w * 9 // 10, h * 8 // 10)], fill=fg)
        if kind == "tree":
            d.rectangle([cx - m // 12, h * 8 // 10, cx + m // 12, h * 19 // 20], fill=(110, 70, 40))
    elif kind == "stripes":
        step = max(h // 8, 4)
        for y in range(0, h, step * 2):
            d.rectangle([0, y, w, y + step], fill=fg)
    elif kind == "dots":
        r = max(m // 16, 2)
        for _ in range(12):
            x, y = rng.randrange(w), rng.randrange(h)
            d.ellipse([x - r, y - r, x + r, y + r], fill=fg)
    elif kind == "traffic":
        r = max(m // 8, 3)
        d.rectangle([cx - 2 * r, h // 10, cx + 2 * r, h * 9 // 10], fill=(40, 40, 40))
        for i, colour in enumerate([(230, 40, 40), (250, 200, 40), (40, 190, 80)]):
            y = h // 10 + (i + 1) * (h * 8 // 10) // 4
            d.ellipse([cx - r, y - r, cx + r, y + r], fill=colour)
    elif kind == "house":
        d.rectangle([w // 4, h // 2, w * 3 // 4, h * 9 // 10], fill=fg)
        d.polygon([(w // 5, h // 2), (cx, h // 8), (w * 4 // 5, h // 2)], fill=(170, 50, 40))
    elif kind == "rainbow":
        colours = [(230, 40, 40), (250, 140, 30), (250, 220, 40), (60, 170, 70), (50, 110, 210), (80, 60, 160), (150, 70, 170)]
        r = m * 9 // 20
        for i, colour in enumerate(colours):
            rr = r - i * max(r // 9, 1)
            d.arc([cx - rr, h - rr, cx + rr, h + rr], 180, 360, fill=colour, width=max(r // 9, 1))
    elif kind == "checker":
        step = max(m // 6, 4)
        for y in range(0, h, step):
            for x in range(0, w, step):
                if (x // step + y // step) % 2:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=fg)
    elif kind == "cloud":
        r = m // 4
        for dx, dy in ((-r, 0), (0, -r // 2), (r, 0), (0, r // 3)):
            d.ellipse([cx + dx - r, cy + dy - r // 1.5, cx + dx + r, cy + dy + r // 1.5], fill=(250, 250, 250))
    elif kind == "fish":
        d.ellipse([w // 5, h // 3, w * 3 // 5, h * 2 // 3], fill=fg)
        d.polygon([(w * 3 // 5 - 2, cy), (w * 4 // 5, h // 4), (w * 4 // 5, h * 3 // 4)], fill=fg)
    elif kind == "ladder":
        d.line([(w // 3, 0), (w // 3, h)], fill=fg, width=max(m // 20, 2))
        d.line([(w * 2 // 3, 0), (w * 2 // 3, h)], fill=fg, width=max(m // 20, 2))
        for y in range(h // 10, h, max(h // 8, 6)):
            d.line([(w // 3, y), (w * 2 // 3, y)], fill=fg, width=max(m // 30, 1))
    else:
        raise ValueError(f"unknown drawing {kind!r}")
    return image


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def make_clot_sample(out_dir: str | os.PathLike, n_records: int = 48, seed: int = 0,
                     heldout_count: int = 8, overwrite: bool = False) -> Path:
    """Write the sample set (and its held-out split) to ``out_dir``; see the module doc.

    The folder is built next to ``out_dir`` and renamed into place, so a reader never sees a half
    written sample. Raises FileExistsError if ``out_dir`` exists and ``overwrite`` is False.
    """
    if not 1 <= n_records <= len(JOKES):
        raise ValueError(f"n_records must be between 1 and {len(JOKES)}, got {n_records}")
    if not 0 <= heldout_count < n_records:
        raise ValueError(f"heldout_count must be in [0, {n_records}), got {heldout_count}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _build(tmp, n_records, seed, heldout_count)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _build(root: Path, n_records: int, seed: int, heldout_count: int) -> None:
    rng = random.Random(seed)
    (root / "ex_images").mkdir()
    records = []
    for i, (kind, joke) in enumerate(JOKES[:n_records]):
        size = rng.choice(SIZES)
        bg, fg = rng.sample(PALETTE, 2)
        name = f"ex_images/meme_{seed}_{i:03d}_{kind}.jpg"
        (root / name).write_bytes(_jpeg_bytes(_draw(kind, size, bg, fg, rng)))
        records.append({"image": name, "conversations": [{"from": HUMAN, "value": CLOT_HUMAN_VALUE},
                                                          {"from": GPT, "value": joke}]})
    with open(root / "ex_cn.json", "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False, indent=2)
        f.write("\n")
    loaded = load_clot_folder(root)
    train, heldout = split_by_image(loaded.records, heldout_count=heldout_count, seed=seed)
    write_split(root, train, heldout, seed=seed, image_folder=root, source=root / "ex_cn.json")


def _replace_dir(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(new, target)
    shutil.rmtree(old)


def sample_texts() -> list[str]:
    """Every text the sample's records hold (the prompt and the jokes): a tokenizer built with
    these (``make_tiny_model(..., tokenizer_texts=sample_texts())``) spells every answer in whole
    characters."""
    return [CLOT_PROMPT] + [joke for _, joke in JOKES]
