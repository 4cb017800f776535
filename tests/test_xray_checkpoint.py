"""Weight files of the learned detectors: missing, unreadable or foreign files are refused."""

import pytest
import torch

from humanoid_inspection.xray import detector_cnn, detector_seg, detector_unet


@pytest.mark.parametrize('load_model', [detector_cnn.load_model, detector_seg.load_model,
                                        detector_unet.load_model], ids=['cnn', 'seg', 'unet'])
def test_bad_checkpoints_are_refused(tmp_path, load_model):
    with pytest.raises(FileNotFoundError, match='xray-train'):
        load_model(tmp_path / 'missing.pt')
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='not a readable torch checkpoint'):
        load_model(junk)
    other = tmp_path / 'other.pt'
    torch.save({'weights': 1}, str(other))
    with pytest.raises(ValueError, match='missing config/state_dict'):
        load_model(other)


@pytest.mark.parametrize('module', [detector_cnn, detector_seg, detector_unet],
                         ids=['cnn', 'seg', 'unet'])
def test_weights_of_another_shape_are_refused_with_the_model_named(tmp_path, module):
    ckpt = torch.load(str(module.DEFAULT_WEIGHTS), map_location='cpu', weights_only=True)
    name = type(module.load_model()).__name__
    first = next(k for k, v in ckpt['state_dict'].items() if v.is_floating_point())
    ckpt['state_dict'][first] = torch.zeros(3, 1, 1)
    bad = tmp_path / 'bad.pt'
    torch.save(ckpt, str(bad))
    with pytest.raises(ValueError, match=f'weights do not fit a {name}'):
        module.load_model(bad)
