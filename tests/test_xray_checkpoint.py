"""Weight files of the learned detectors: missing, unreadable or foreign files are refused."""

import pytest
import torch

from humanoid_inspection.xray import detector_cnn, detector_unet


@pytest.mark.parametrize('load_model', [detector_cnn.load_model, detector_unet.load_model],
                         ids=['cnn', 'unet'])
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
