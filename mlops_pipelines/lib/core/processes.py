"""Is a process still running on this host? How the run watchdog tells a killed Dagster run from a live one."""

import psutil

# psutil derives a process's start time from the boot time, which Linux reports to the second.
START_TIME_TOLERANCE_S = 2.0


def process_running(pid: int, seen_at: float) -> bool:
    """True when ``pid`` is a live process (not a zombie) that already existed at ``seen_at`` (Unix time).

    A process created after ``seen_at`` holds a reused pid (Linux's default pid_max is 32768): it is not the
    process that was seen. A process we may not inspect (another user's) is taken as running.
    """
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= seen_at + START_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True
