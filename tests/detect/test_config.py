"""The site config is checked strictly once: every mistake names its key."""

from pathlib import Path

import pytest
import yaml

from detect.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def base() -> dict:
    return yaml.safe_load((REPO / "configs" / "site.yaml").read_text())


def test_shipped_config_is_valid():
    config = load_config(REPO / "configs" / "site.yaml")
    assert set(config.categories) == {"illegal_parking", "street_vending", "piled_debris"}
    assert config.model.weights.is_absolute()


def test_shipped_config_runs_the_shipped_model_at_its_size():
    from detect.yolo import SHIPPED_IMGSZ, SHIPPED_WEIGHTS

    model = load_config(REPO / "configs" / "site.yaml").model
    assert (model.weights, model.imgsz) == (SHIPPED_WEIGHTS, SHIPPED_IMGSZ)


def test_setup_errors_are_named_not_value_errors(tmp_path):
    """detect's user errors are caught by name; a bug's ValueError is never taken for a bad setup."""
    from detect import SetupError
    from detect.backends import ExportError
    from detect.model.dataset import DatasetError
    from detect.model.evaluation import EvaluationError
    from detect.model.training import TrainingError
    from detect.yolo import ModelError

    for error in (ConfigError, ModelError, ExportError, DatasetError, EvaluationError, TrainingError):
        assert issubclass(error, SetupError) and not issubclass(error, ValueError), error
    with pytest.raises(SetupError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def set_key(data: dict, path: str, value) -> dict:
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "categories.illegal_parking.min_dwel_s",
            3,
            "categories.illegal_parking.min_dwel_s: unknown key; did you mean min_dwell_s?",
        ),
        ("categories.illegal_parking.min_dwell_s", -1, "categories.illegal_parking.min_dwell_s"),
        ("categories.illegal_parking.kinds", ["car", "hovercraft"], "hovercraft"),
        ("model.imgsz", 630, "model.imgsz"),
        ("model.conf", 1.5, "model.conf"),
        ("analysis_fps", 0, "analysis_fps"),
        ("tracker.type", "sort", "tracker.type"),
        ("cameras.0.zones.0.kind", "no_smoking", "cameras[demo-cam-01].zones[collection-access-lane].kind"),
        (
            "cameras.0.zones.0.points_norm",
            [[0, 0], [1.2, 0], [1, 1]],
            "cameras[demo-cam-01].zones[collection-access-lane].points_norm[1]: x = 1.2 is outside 0..1: "
            "points_norm are fractions of the image size",
        ),
        (
            "cameras.0.zones.0.points_norm",
            [[0, 0], [1, 0]],
            "cameras[demo-cam-01].zones[collection-access-lane].points_norm",
        ),
        ("cameras.0.zones.0.points_norm", [[0, 0], [1, 1], [1, 0], [0, 1]], "simple polygon"),
        ("cameras.0.zones.1.active_hours", ["6-22"], "'6-22' is not 'HH:MM-HH:MM'"),
        ("cameras.0.zones.1.active_hours", ["06:00-24:30"], "'06:00-24:30' is not 'HH:MM-HH:MM'"),
        ("cameras.0.timezone", "Mars/Olympus", "unknown time zone"),
        ("cameras.0.timezon", "UTC", "cameras[demo-cam-01].timezon: unknown key; did you mean timezone?"),
        (
            "cameras.0.zones.0.kindd",
            "no_parking",
            f"{'cameras[demo-cam-01].zones[collection-access-lane]'}.kindd: unknown key; did you mean kind?",
        ),
        ("trackr", {}, "trackr: unknown key; did you mean tracker?"),
        ("cameras.0.zones.0.points_norm", [[0, 0], [0.5, -0.1], [1, 1]], "y = -0.1 is outside 0..1"),
        ("cameras.0.position", {"lat": 120.1, "lon": 30.2}, "cameras[demo-cam-01].position.lat"),
    ],
)
def test_bad_key_is_named(tmp_path, path, value, message):
    f = tmp_path / "site.yaml"
    f.write_text(yaml.safe_dump(set_key(base(), path, value)))
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert message in str(err.value)
    assert str(f) in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("", "must be a mapping"),
    ],
)
def test_unreadable_config(tmp_path, text, message):
    f = tmp_path / "site.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f)


def test_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_relative_weights_resolve_against_config_folder(tmp_path):
    data = base()
    data["model"]["weights"] = "w/model.pt"
    f = tmp_path / "site.yaml"
    f.write_text(yaml.safe_dump(data))
    assert load_config(f).model.weights == tmp_path / "w" / "model.pt"


def test_a_yaml_error_names_the_place_but_never_quotes_a_source_url(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text("cameras:\n  - id: gate\n    source: rtsp://admin:s3cr3t@10.0.0.5/live?token=t0k3n: x: y\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    message = str(err.value)
    assert "not valid YAML" in message and "line 3, column" in message and str(f) in message
    assert "s3cr3t" not in message and "t0k3n" not in message
