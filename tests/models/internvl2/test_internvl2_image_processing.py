"""Dynamic tiling and normalisation, as the official load_image."""
import pytest
import torch
from PIL import Image

from xtuner_ext.models.internvl2 import (IMAGENET_MEAN, IMAGENET_STD, dynamic_preprocess, load_image,
                                         num_tiles_for_size)
from xtuner_ext.models.internvl2.image_processing import choose_grid


@pytest.mark.parametrize('size,max_num,grid', [
    ((800, 600), 6, (3, 2)),      # 4:3 is closest among grids of <= 6 tiles
    ((448, 448), 6, (1, 1)),      # tie between 1x1 and 2x2: a small image keeps one tile
    ((1000, 1000), 12, (3, 3)),   # same tie, but the image is big enough for 3x3
    ((2000, 300), 6, (6, 1)),
    ((300, 2000), 12, (1, 7)),
])
def test_grid_choice(size, max_num, grid):
    assert choose_grid(*size, min_num=1, max_num=max_num) == grid


@pytest.mark.parametrize('size', [(448, 448), (800, 600), (123, 777), (1920, 1080), (50, 3000)])
@pytest.mark.parametrize('max_num', [1, 2, 6, 12])
def test_num_tiles_for_size_counts_what_load_image_returns(size, max_num):
    tiles = load_image(Image.new('RGB', size), input_size=56, max_num=max_num)
    assert num_tiles_for_size(*size, min_num=1, max_num=max_num, image_size=56) == tiles.shape[0]
    assert tiles.shape[1:] == (3, 56, 56)


def test_tiles_are_row_major_crops_then_thumbnail():
    image = Image.new('RGB', (896, 448), (255, 0, 0))
    image.paste((0, 0, 255), (448, 0, 896, 448))
    tiles = dynamic_preprocess(image, max_num=6, image_size=448, use_thumbnail=True)
    assert [t.size for t in tiles] == [(448, 448)] * 3
    assert tiles[0].getpixel((10, 10)) == (255, 0, 0) and tiles[1].getpixel((10, 10)) == (0, 0, 255)
    assert tiles[2].getpixel((10, 200)) == (255, 0, 0) and tiles[2].getpixel((440, 200)) == (0, 0, 255)
    assert len(dynamic_preprocess(image, max_num=6, image_size=448, use_thumbnail=False)) == 2


def test_imagenet_normalisation_and_path_input(tmp_path):
    color = (30, 128, 250)
    Image.new('RGB', (448, 448), color).save(tmp_path / 'a.png')
    tiles = load_image(tmp_path / 'a.png')
    expected = torch.tensor([(c / 255 - m) / s for c, m, s in zip(color, IMAGENET_MEAN, IMAGENET_STD)])
    assert tiles.shape == (1, 3, 448, 448) and tiles.dtype == torch.float32
    assert torch.allclose(tiles[0, :, 100, 100], expected, atol=1e-6)
    grey = load_image(Image.new('L', (448, 448), 128))  # non-RGB input is converted
    assert grey.shape == (1, 3, 448, 448)


def test_bad_tile_bounds():
    with pytest.raises(ValueError, match='need 1 <= min_num <= max_num'):
        num_tiles_for_size(100, 100, min_num=3, max_num=2)
