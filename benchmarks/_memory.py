"""Peak memory of the running process, for benchmarks that run each side in a fresh process, and that run."""

import multiprocessing


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


def in_fresh_process(target, *args):
    """``target(*args, queue)`` in a fresh (spawned) process; what it put on the queue."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result
