"""Renamed keywords keep working for one release, with a ``DeprecationWarning`` that names the new one."""

from __future__ import annotations

import functools
import warnings


def renamed_keywords(**old_to_new):
    """Decorate a function whose keywords ``old`` were renamed ``new``: the old names still work, with a
    ``DeprecationWarning``; passing both is a ``TypeError``."""
    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{function.__qualname__}() got both {old}= (its old name) and {new}=.")
                    warnings.warn(f"{function.__qualname__}({old}=...) is now {new}=...; the old name will be "
                                  "removed in the next release.", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        wrapper.renamed_keywords = dict(old_to_new)
        return wrapper

    return decorate
