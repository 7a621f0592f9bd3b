"""Device listing, description and lookup against fake device lists and the real sounddevice."""

from __future__ import annotations

import pytest

from streamer.audio.devices import (
    NO_DEVICES_MESSAGE,
    NO_INPUT_HINT,
    NO_OUTPUT_HINT,
    DeviceInfo,
    describe_devices,
    find_device,
    list_devices,
    negotiate_settings,
)
from streamer.errors import DeviceError


@pytest.fixture
def sd(fake_sd, make_dev):
    return fake_sd(
        [
            make_dev("Built-in Microphone", 2, 0, 44100.0),
            make_dev("Built-in Output", 0, 2, 48000.0),
            make_dev("USB Audio CODEC", 1, 2, 48000.0),
            make_dev("USB Audio CODEC Monitor", 2, 0, 48000.0),
            make_dev("HDMI 0", 0, 8, 48000.0),
        ],
        default=(0, 1),
    )


def test_list_devices_gives_frozen_records(sd) -> None:
    devices = list_devices(sd)
    assert [d.index for d in devices] == [0, 1, 2, 3, 4]
    assert devices[2] == DeviceInfo(2, "USB Audio CODEC", 1, 2, 48000.0)
    with pytest.raises(AttributeError):
        devices[0].name = "x"  # type: ignore[misc]


def test_describe_devices_is_a_table_with_defaults_marked(sd) -> None:
    text = describe_devices(sd)
    lines = text.splitlines()
    assert lines[0].split() == ["index", "name", "in", "out", "rate", "(Hz)"]
    assert len(lines) == 1 + 5 + 1
    assert lines[1].startswith(">") and "Built-in Microphone" in lines[1] and "44100" in lines[1]
    assert lines[2].startswith(" <") and "Built-in Output" in lines[2]
    assert lines[5].split() == ["4", "HDMI", "0", "0", "8", "48000"]
    assert "default input" in lines[-1]


def test_describe_devices_without_devices_says_so_and_what_to_do(fake_sd) -> None:
    text = describe_devices(fake_sd([]))
    assert text == NO_DEVICES_MESSAGE
    assert "No audio devices found" in text and "--input file.wav" in text and "--output out.wav" in text


def test_find_by_default_index_and_name(sd) -> None:
    assert find_device(None, kind="input", sd=sd).name == "Built-in Microphone"
    assert find_device(None, kind="output", sd=sd).name == "Built-in Output"
    assert find_device(2, kind="input", sd=sd).name == "USB Audio CODEC"
    assert find_device("4", kind="output", sd=sd).name == "HDMI 0"
    assert find_device("hdmi", kind="output", sd=sd).index == 4
    assert find_device("MICRO", kind="input", sd=sd).index == 0
    # "usb audio codec" is also a substring of the Monitor device: the exact name wins
    assert find_device("usb audio codec", kind="input", sd=sd).index == 2
    assert find_device("usb", kind="output", sd=sd).index == 2  # the Monitor has no outputs


def test_default_falls_back_to_the_first_device_of_that_kind(fake_sd, make_dev) -> None:
    sd = fake_sd([make_dev("Out", 0, 2), make_dev("In", 1, 0)], default=(-1, -1))
    assert find_device(None, kind="input", sd=sd).name == "In"
    assert find_device(None, kind="output", sd=sd).name == "Out"


@pytest.mark.parametrize(
    ("spec", "kind", "pattern"),
    [
        (9, "input", "no audio device with index 9; run `streamer devices`"),
        (1, "input", r"audio device 1 \('Built-in Output'\) has no input channels"),
        ("usb", "input", r"ambiguous, it matches 2: 'USB Audio CODEC', 3: 'USB Audio CODEC Monitor'"),
        ("bluetooth", "output", r"no output device matches 'bluetooth'; output devices are: 'Built-in Output'"),
        (2.0, "input", "must be an index or a name"),
    ],
)
def test_find_device_errors(sd, spec, kind, pattern) -> None:
    with pytest.raises(DeviceError, match=pattern):
        find_device(spec, kind=kind, sd=sd)


def test_find_device_when_there_is_none(fake_sd, make_dev) -> None:
    with pytest.raises(DeviceError) as err:
        find_device(None, kind="input", sd=fake_sd([]))
    assert str(err.value) == NO_INPUT_HINT
    with pytest.raises(DeviceError) as err:
        find_device("speaker", kind="output", sd=fake_sd([make_dev("Mic", 1, 0)]))
    assert str(err.value) == NO_OUTPUT_HINT
    with pytest.raises(ValueError, match="kind"):
        find_device(None, kind="both", sd=fake_sd([]))  # type: ignore[arg-type]


def test_negotiate_prefers_the_wanted_rate_then_the_default(fake_sd, make_dev) -> None:
    sd = fake_sd(
        [make_dev("A", 1, 0, 44100.0), make_dev("B", 2, 0, 48000.0), make_dev("C", 1, 0, 48000.0)],
        rates={1: {48000}, 2: {8000}},
        channels={1: {2}},
    )
    devices = list_devices(sd)
    assert negotiate_settings(sd, devices[0], kind="input", sample_rate=16000) == (16000, 1)
    assert negotiate_settings(sd, devices[1], kind="input", sample_rate=16000) == (48000, 2)
    with pytest.raises(DeviceError, match=r"cannot open input device 2 \('C'\): 16000 Hz x1: Invalid sample rate"):
        negotiate_settings(sd, devices[2], kind="input", sample_rate=16000)


def test_real_sounddevice_does_not_crash() -> None:
    devices = list_devices()
    text = describe_devices()
    if devices:
        assert devices[0].name in text
    else:  # this build machine: PortAudio present, no devices
        assert text == NO_DEVICES_MESSAGE
