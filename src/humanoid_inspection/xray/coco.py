"""COCO-style annotation helpers for simulated radiographs (categories, RLE masks, records).

Segmentation masks are COCO *uncompressed* RLE: {'size': [height, width], 'counts': [...]},
run lengths over the column-major (Fortran order) flattened mask, starting with a run of
zeros, as pycocotools expects from `frPyObjects` on uncompressed RLE.
"""

import numpy as np

from humanoid_inspection.xray.defects import DEFECT_KINDS

CATEGORIES = [{'id': index + 1, 'name': kind, 'supercategory': 'casting_defect'}
              for index, kind in enumerate(DEFECT_KINDS)]
CATEGORY_IDS = {c['name']: c['id'] for c in CATEGORIES}


def encode_rle(mask_crop: np.ndarray, box_xyxy, shape) -> dict:
    """Uncompressed COCO RLE of a cropped mask placed at box_xyxy in an image of `shape`.

    Args:
        mask_crop: bool (y1 - y0, x1 - x0).
        box_xyxy: (x0, y0, x1, y1) of the crop in the image.
        shape: (height, width) of the image.

    Returns:
        {'size': [height, width], 'counts': [run lengths]}.
    """
    height, width = int(shape[0]), int(shape[1])
    x0, y0 = int(box_xyxy[0]), int(box_xyxy[1])
    ys, xs = np.nonzero(np.asarray(mask_crop, bool))
    index = np.sort((xs + x0).astype(np.int64) * height + (ys + y0))
    total = height * width
    if index.size == 0:
        return {'size': [height, width], 'counts': [total]}
    breaks = np.nonzero(np.diff(index) != 1)[0]
    starts = np.concatenate([[index[0]], index[breaks + 1]])
    ends = np.concatenate([index[breaks], [index[-1]]]) + 1
    counts = []
    previous = 0
    for start, end in zip(starts, ends):
        counts += [int(start - previous), int(end - start)]
        previous = end
    counts.append(int(total - previous))
    return {'size': [height, width], 'counts': counts}


def decode_rle(rle: dict) -> np.ndarray:
    """Bool (height, width) mask from an uncompressed COCO RLE.

    Raises:
        ValueError: when the run lengths do not add up to height * width.
    """
    height, width = rle['size']
    counts = np.asarray(rle['counts'], np.int64)
    if counts.sum() != height * width:
        raise ValueError(f'RLE counts sum to {counts.sum()}, expected {height * width}')
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T


def annotation_records(truth, image_id: int, first_id: int, shape) -> list:
    """COCO annotation dicts for a radiograph's DefectTruth list.

    `area` is the mask area in pixels (COCO convention); `area_mm2` and `size_mm` are in mm
    at the defect's depth.
    """
    records = []
    for offset, item in enumerate(truth):
        mask_pixels = int(np.count_nonzero(item.mask))
        records.append({
            'id': first_id + offset, 'image_id': image_id,
            'category_id': CATEGORY_IDS[item.kind], 'category': item.kind,
            'bbox': item.bbox_xywh, 'area': mask_pixels, 'iscrowd': 0,
            'segmentation': encode_rle(item.mask, item.box_xyxy, shape),
            'size_mm': round(float(item.size_mm), 4),
            'area_mm2': round(float(item.area_mm2), 4),
            'subtype': item.subtype, 'cluster_id': item.cluster_id,
            'defect_id': item.defect_id, 'contrast': round(float(item.contrast), 5),
            'detectability': round(float(item.detectability), 3),
            'magnification': round(float(item.magnification), 5),
        })
    return records
