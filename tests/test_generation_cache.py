import pytest

from admap.generate import Completion
from admap.generate.cache import ResponseCache, request_key
from admap.generate.runner import generate_cached


class EchoGenerator:
    """Replies with a function of the prompt; counts what it was asked; can die part-way."""

    name, model = "echo", "echo-1"

    def __init__(self, deterministic=True, die_after=None):
        self.deterministic, self.die_after, self.asked = deterministic, die_after, []

    def identity(self):
        return {"generator": self.name, "model": self.model}

    def generate(self, conversations, *, on_result=None):
        results = []
        for position, conversation in enumerate(conversations):
            if self.die_after is not None and len(self.asked) == self.die_after:
                raise KeyboardInterrupt("killed")
            self.asked.append(conversation[-1]["content"])
            completion = Completion(text=f"re: {conversation[-1]['content']}", tokens_in=3, tokens_out=2)
            results.append(completion)
            if on_result:
                on_result(position, completion)
        return results


def _conversations(n):
    return [[{"role": "user", "content": f"q{k}"}] for k in range(n)]


def test_cache_round_trip_and_atomic_files(tmp_path):
    cache = ResponseCache(tmp_path)
    key = request_key({"model": "m"}, [{"role": "user", "content": "hi"}])
    assert cache.get(key) is None
    cache.put(key, Completion(text="hello", tokens_in=1, tokens_out=2))
    assert cache.get(key) == Completion(text="hello", tokens_in=1, tokens_out=2, cached=True)
    cache.put(request_key({"model": "m"}, []), Completion(text=None, error="boom"))
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.json"]  # no failure, no temp file
    assert key != request_key({"model": "n"}, [{"role": "user", "content": "hi"}])
    assert key != request_key({"model": "m"}, [{"role": "user", "content": "hi"}], scope="run-2")


def test_second_run_is_served_from_the_cache(tmp_path):
    cache = ResponseCache(tmp_path)
    first = EchoGenerator()
    replies, stats = generate_cached(first, _conversations(5), cache=cache)
    assert [r.text for r in replies] == [f"re: q{k}" for k in range(5)]
    assert (stats.requests, stats.cache_hits, stats.tokens_in, stats.tokens_out) == (5, 0, 15, 10)
    second = EchoGenerator()
    again, stats = generate_cached(second, _conversations(6), cache=cache)
    assert second.asked == ["q5"] and stats.cache_hits == 5
    assert [r.text for r in again] == [f"re: q{k}" for k in range(6)]
    # Cached replies cost nothing new.
    assert (stats.tokens_in, stats.tokens_out) == (3, 2)


def test_replies_reported_before_a_crash_are_kept(tmp_path):
    cache = ResponseCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        generate_cached(EchoGenerator(die_after=3), _conversations(8), cache=cache)
    resumed = EchoGenerator()
    replies, stats = generate_cached(resumed, _conversations(8), cache=cache)
    assert resumed.asked == ["q3", "q4", "q5", "q6", "q7"]
    assert stats.cache_hits == 3 and all(r.ok for r in replies)


def test_sampled_replies_are_cached_only_within_their_scope(tmp_path):
    cache = ResponseCache(tmp_path)
    generate_cached(EchoGenerator(deterministic=False), _conversations(2), cache=cache)
    assert not any(tmp_path.rglob("*.json"))  # no scope: never cached
    generate_cached(EchoGenerator(deterministic=False), _conversations(2), cache=cache, scope="out/a.jsonl")
    same_scope = EchoGenerator(deterministic=False)
    generate_cached(same_scope, _conversations(2), cache=cache, scope="out/a.jsonl")
    other_scope = EchoGenerator(deterministic=False)
    generate_cached(other_scope, _conversations(2), cache=cache, scope="out/b.jsonl")
    assert same_scope.asked == [] and other_scope.asked == ["q0", "q1"]


def test_without_a_cache_everything_is_generated():
    generator = EchoGenerator()
    generate_cached(generator, _conversations(3), cache=None)
    generate_cached(generator, _conversations(3), cache=None)
    assert len(generator.asked) == 6
