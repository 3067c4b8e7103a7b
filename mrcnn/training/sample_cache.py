"""A bounded, thread-safe memory cache of per-image training samples, kept across epochs.

What an image yields before augmentation does not change from one epoch to the next (the decoded,
resized image, its instance masks, its anchor labels); only the random parts (anchor sampling,
augmentation) do. Keeping it means later epochs skip decoding, the data set's ``load_mask`` and
resizing.

The cache holds at most ``max_bytes``; entries are kept first come, first kept, and an entry that
does not fit is simply not kept (no eviction: under a shuffled order, evicting would trade one
miss for another). With a data set larger than the bound, the images that fit are served from
memory and the rest are prepared each time. Stored arrays are made read-only, so a consumer that
tried to change one in place would fail loudly instead of corrupting later epochs.

One cache belongs to one data set object and one set of preparation settings
(`cache_for`): training stages that follow each other on the same data set share it.
"""

import threading
import weakref

import numpy as np

__all__ = ["SampleCache", "cache_for", "clear_caches", "array_bytes"]


def array_bytes(value):
    """Bytes of the NumPy arrays in ``value`` (arrays, dicts, lists, tuples, objects with
    ``nbytes``)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(array_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(array_bytes(v) for v in value)
    return int(getattr(value, "nbytes", 0) or 0)


def _freeze(value):
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, dict):
        for v in value.values():
            _freeze(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _freeze(v)
    elif hasattr(value, "__dict__"):
        for v in vars(value).values():
            _freeze(v)


class SampleCache:
    """``key -> entry`` within ``max_bytes`` (``array_bytes`` of the entries).

    Thread-safe. ``hits`` and ``misses`` count `get` calls; ``nbytes`` is what is held.
    """

    def __init__(self, max_bytes):
        self.max_bytes = max(0, int(max_bytes))
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._entries = {}
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._entries)

    def __contains__(self, key):
        return key in self._entries

    def get(self, key):
        """The entry stored for ``key``, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def put(self, key, entry):
        """Keep ``entry`` if it fits in what is left of the bound; returns whether it was kept.
        Its arrays become read-only."""
        size = array_bytes(entry)
        with self._lock:
            if key in self._entries:
                return True
            if self.nbytes + size > self.max_bytes:
                return False
            _freeze(entry)
            self._entries[key] = entry
            self.nbytes += size
            return True

    def clear(self):
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def __getstate__(self):
        # A copy in another process starts empty, with the same bound.
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state["max_bytes"])


_caches = weakref.WeakKeyDictionary()  # data set object -> {settings key: SampleCache}
_caches_lock = threading.Lock()


def cache_for(dataset, settings, max_bytes):
    """The cache of ``dataset`` for preparation ``settings`` (a hashable key), made with bound
    ``max_bytes`` the first time. It lives as long as the data set object."""
    with _caches_lock:
        try:
            per_dataset = _caches.setdefault(dataset, {})
        except TypeError:  # a data set that takes no weak reference: a cache for this use only
            return SampleCache(max_bytes)
        cache = per_dataset.get(settings)
        if cache is None or cache.max_bytes != max(0, int(max_bytes)):
            cache = per_dataset[settings] = SampleCache(max_bytes)
        return cache


def clear_caches(dataset=None):
    """Drop the cached samples of ``dataset`` (all data sets when None), e.g. after changing
    its images or annotations in place."""
    with _caches_lock:
        if dataset is None:
            _caches.clear()
        else:
            _caches.pop(dataset, None)
