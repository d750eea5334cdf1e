"""A run executed outside a code server, as ``dagster job execute`` or a script does: the multiprocess executor,
every step in a process of its own, on the instance of ``DAGSTER_HOME``.

    python -m mlops_pipelines_tests.test_defs.run_worker JOB [--assets KEY,KEY] [--ready FILE] [TAG=VALUE ...]

Prints the run id; exits 0 if the run succeeded.

``--ready FILE``: load everything first, touch FILE, then wait for a line "go" on stdin, so that the test
chooses the moment the run starts (two runs at once; a run submitted right after a kill). Its step processes
then fork from a forkserver that has the code location loaded, instead of starting a fresh interpreter that
loads it again (seconds per step, held inside the warehouse slot). Each step still is a process of its own,
with its own warehouse connection: what the pool and the warehouse lock are about.
"""

import argparse
import multiprocessing
import sys
from pathlib import Path

import dagster as dg

from mlops_pipelines_tests.test_defs import jobs_for_test


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("tags", nargs="*", help="TAG=VALUE")
    parser.add_argument("--assets", default="", help="comma-separated asset keys (default: the whole job)")
    parser.add_argument("--ready", type=Path)
    args = parser.parse_args()
    job = dg.reconstructable(getattr(jobs_for_test, args.job))
    assets = [dg.AssetKey.from_user_string(key) for key in args.assets.split(",") if key]
    run_config = {}
    if args.ready:
        multiprocessing.set_forkserver_preload(["dagster._core.executor.multiprocess", jobs_for_test.__name__])
        warm_up = multiprocessing.get_context("forkserver").Process(target=print, args=("forkserver ready",))
        warm_up.start()  # returns once the forkserver has preloaded the code location
        warm_up.join()
        run_config = {"execution": {"config": {"multiprocess": {"start_method": {"forkserver": {}}}}}}
    with dg.DagsterInstance.get() as instance:
        if args.ready:
            args.ready.touch()
            if sys.stdin.readline().strip() != "go":
                sys.exit("no go")
        result = dg.execute_job(
            job,
            instance=instance,
            tags=dict(tag.split("=", 1) for tag in args.tags),
            asset_selection=assets or None,
            run_config=run_config,
        )
        print(result.run_id)
        sys.exit(0 if result.success else 1)


if __name__ == "__main__":
    main()
