"""Running a test's body in several threads at once, with what they raise reported by the main thread."""
import threading


def errors_in_threads(target, arguments: list[tuple]) -> list:
    """Start one thread per argument tuple, each running target(*args), all at once; when every thread is done, the
    exceptions they raised (an empty list when none did), for the test to assert on: an exception inside a thread
    would otherwise only be printed."""
    errors = []

    def guarded(*args):
        try:
            target(*args)
        except BaseException as e:   # (an assertion failure too)
            errors.append(e)
    threads = [threading.Thread(target=guarded, args=args) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
