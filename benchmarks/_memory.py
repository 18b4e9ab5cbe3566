"""Peak memory of the running process, for benchmarks that run each side in a fresh process."""


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), in MiB; NaN where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
