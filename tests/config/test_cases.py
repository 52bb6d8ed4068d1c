"""One TOML file per error scenario in cases/; each states the exact errors it must produce.

A case file lists its expected messages as ``# expect: <message>`` comment lines. The loader must report
exactly those, no fewer (every error is collected) and no more (one mistake, one message).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_config_text
from pipeline.errors import ConfigError
from tests.config.fakes import registry

CASES = sorted((Path(__file__).parent / "cases").glob("*.toml"))
EXPECT = "# expect: "


def expected_errors(text: str) -> list[str]:
    return [line.removeprefix(EXPECT) for line in text.splitlines() if line.startswith(EXPECT)]


def test_cases_exist() -> None:
    # Guards the parametrization below against a moved directory silently running zero cases.
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case_reports_exactly_its_errors(case: Path) -> None:
    text = case.read_text()
    expected = expected_errors(text)
    assert expected, f"{case.name} states no '# expect:' line"

    with pytest.raises(ConfigError) as caught:
        load_config_text([(case.name, text)], registry(), env={})

    # In order: the report is deterministic, grouped by top-level table as a config file is written.
    assert list(caught.value.errors) == expected
