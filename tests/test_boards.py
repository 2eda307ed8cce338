import pytest

from flow.config import BoardConfig
from flow.errors import FlowError
from flow.hardware.boards import RESOURCES, known_boards, load_board, resolve_board

EXPECTED_PARTS = {
    "pynq-z2": "xc7z020clg400-1",
    "arty-a7-100t": "xc7a100tcsg324-1",
    "zcu104": "xczu7ev-ffvc1156-2-e",
    "alveo-u250": "xcu250-figd2104-2L-e",
}


def test_required_boards_exist_with_capacities():
    assert set(EXPECTED_PARTS) <= set(known_boards())
    for name, part in EXPECTED_PARTS.items():
        board = load_board(name)
        assert board.part == part
        assert board.clock_period > 0
        assert all(board.capacity[r] > 0 for r in RESOURCES)
    assert load_board("alveo-u250").capacity["LUT"] > load_board("pynq-z2").capacity["LUT"]


def test_resolve_named_raw_and_default():
    assert resolve_board(BoardConfig()).name == "pynq-z2"
    raw = resolve_board(BoardConfig(part="xc7a35tcpg236-1", clock_period=8.0))
    assert (raw.part, raw.clock_period, raw.capacity) == ("xc7a35tcpg236-1", 8.0, {})
    assert resolve_board(BoardConfig(name="zcu104", clock_period=4.0)).clock_period == 4.0


def test_unknown_board_lists_known_ones():
    with pytest.raises(FlowError) as err:
        resolve_board(BoardConfig(name="pynq"))
    assert "board 'pynq' is unknown" in str(err.value)
    for name in EXPECTED_PARTS:
        assert name in str(err.value)


def test_incomplete_board_file(tmp_path):
    (tmp_path / "half.yaml").write_text("part: xc7a35t\nclock_period: 10\ncapacity: {LUT: 1}\n")
    with pytest.raises(FlowError, match="capacity lacks FF, DSP, BRAM_18K"):
        load_board("half", tmp_path)
