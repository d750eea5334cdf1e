"""docs/data_plane.md says where every asset may run when steps are spread over workers: it must name every
asset of the code location, and the pool it says pins them to the warehouse's host must be theirs."""

import re

import dagster as dg

from mlops_pipelines.defs.common import SPECS
from mlops_pipelines.partitions import WAREHOUSE_POOL
from mlops_pipelines.settings import REPO_ROOT

DOC = REPO_ROOT / "docs" / "data_plane.md"


def classified_assets() -> set[str]:
    """The asset keys named in the asset column of the doc's table, ``<model>`` expanded to every model spec."""
    names = set()
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and not set(cells[2]) <= {"-", " "} and cells[2] != "asset(s)":
            for name in re.findall(r"`([^`]+)`", cells[2]):
                names |= {name.replace("<model>", model) for model in SPECS} if "<model>" in name else {name}
    return names


def test_every_asset_is_classified_in_the_data_plane_doc(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert classified_assets() == keys
    # "today all of them run on the warehouse host": each declares the warehouse pool
    assert {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).pools != {WAREHOUSE_POOL}
    } == set()
