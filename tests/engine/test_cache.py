from studio.engine.cache import ModelCache


class Loaded:
    def __init__(self, name, size):
        self.name, self.memory_bytes, self.closed = name, size, False

    def close(self):
        self.closed = True


def test_cache_keeps_models_and_evicts_least_recently_used():
    cache = ModelCache(budget_bytes=100)
    loads = []

    def loader(name, size):
        def load():
            loads.append(name)
            return Loaded(name, size)

        return load

    a = cache.get(("a", "torch", "cpu", "float32"), loader("a", 40))
    cache.get(("b", "torch", "cpu", "float32"), loader("b", 40))
    assert cache.get(("a", "torch", "cpu", "float32"), loader("a", 40)) is a  # hit, now most recent
    cache.get(("c", "torch", "cpu", "float32"), loader("c", 40))  # over budget: b is the oldest
    assert loads == ["a", "b", "c"]
    assert [k[0] for k in cache.keys()] == ["a", "c"]
    assert cache.used_bytes == 80


def test_key_includes_device_and_dtype():
    cache = ModelCache()
    x = cache.get(("m", "torch", "cpu", "float32"), lambda: Loaded("x", 1))
    y = cache.get(("m", "torch", "cuda", "float16"), lambda: Loaded("y", 1))
    assert x is not y


def test_a_model_alone_over_budget_is_kept_and_evicted_ones_are_closed():
    cache = ModelCache(budget_bytes=10)
    first = cache.get("a", lambda: Loaded("a", 50))
    cache.get("b", lambda: Loaded("b", 50))
    assert cache.keys() == ["b"] and first.closed


def test_room_is_made_before_loading_and_pinned_models_stay():
    cache = ModelCache(budget_bytes=100)
    a = cache.get("a", lambda: Loaded("a", 60))
    seen_at_load = []
    cache.get("b", lambda: seen_at_load.append(cache.keys()) or Loaded("b", 60), expected_bytes=60)
    assert seen_at_load == [[]] and a.closed, "a was unloaded before b was loaded"
    with cache.pinned("b"):
        c = cache.get("c", lambda: Loaded("c", 60), expected_bytes=60)
        assert "b" in cache and "c" in cache, "the pinned model stays even over budget"
    cache.get("d", lambda: Loaded("d", 60), expected_bytes=60)
    assert cache.keys() == ["d"] and c.closed
