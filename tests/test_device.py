"""kit.device.pick_device: the one place a device argument ("auto", a name, None or a torch.device) is resolved."""
import pytest
import torch

from kit.device import pick_device


def test_pick_device_takes_names_none_and_devices():
    assert pick_device(None) == pick_device("auto") == pick_device()
    assert pick_device("cpu") == torch.device("cpu")
    dev = torch.device("cuda", 3)          # taken as given, even where no such card exists: the caller chose it
    assert pick_device(dev) is dev
    with pytest.raises(ValueError, match="parameter 'device' must be one of"):
        pick_device("gpu")
