"""make_utt2spkid: integer speaker labels that ESPnet's text_int loader reads."""

import pytest

from espnet2.bin.make_utt2spkid import main, make_utt2spkid
from espnet2.fileio.read_text import load_num_sequence_text


def test_ids_are_sorted_speakers_and_load_with_text_int(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    (train / "utt2spk").write_text("b-1 bob\na-1 alice\na-2 alice\n")
    main([str(train)])
    assert (train / "spk2spkid").read_text() == "alice 0\nbob 1\n"
    # exactly what --train_data_path_and_name_and_type ...,spk_labels,text_int yields
    assert load_num_sequence_text(train / "utt2spkid", loader_type="text_int") == {
        "b-1": [1], "a-1": [0], "a-2": [0],
    }
    # written through a temp file, yet readable like the rest of the data dir (mkstemp makes 0600):
    # on a shared cluster the group reads the recipe's data dirs
    for name in ("spk2spkid", "utt2spkid"):
        assert (train / name).stat().st_mode & 0o777 == 0o644, name


def test_other_set_reuses_training_ids_and_marks_unknown_speakers(tmp_path):
    train, dev = tmp_path / "train", tmp_path / "dev"
    train.mkdir(), dev.mkdir()
    (train / "utt2spk").write_text("a-1 alice\nb-1 bob\n")
    make_utt2spkid(train)
    (dev / "utt2spk").write_text("b-2 bob\nc-1 carol\n")
    make_utt2spkid(dev, train / "spk2spkid")
    assert (dev / "utt2spkid").read_text() == "b-2 1\nc-1 -1\n"
    assert not (dev / "spk2spkid").exists()


def test_malformed_utt2spk_names_file_and_line(tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 alice\na-2\n")
    with pytest.raises(ValueError, match=r"utt2spk:2: expected"):
        make_utt2spkid(tmp_path)
    assert not (tmp_path / "utt2spkid").exists()
