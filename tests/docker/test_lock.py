"""The MLflow image's lock against its input, the image, and the interpreter the tests run on.

The image installs docker/mlflow/requirements.lock and nothing else; so does
`make install` before the development packages. These checks make the tests
run what the image ships: the same packages at the same versions, on the same
Python minor, and a lock that still says what requirements.txt says (compiling
it again needs the package index, so `make lock` does that, not a test).
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.markers import Marker
from packaging.requirements import Requirement

from tests.docker.test_dockerfiles import dockerfile, instructions
from tools.mlflow_lock import INPUT, LOCK, REPO, Locked, canonical, compile_command, image_python, read_lock

# How uv's annotations name the input (`# via -r <path>`): as `make lock` passes it.
INPUT_SOURCE = f"-r {INPUT.relative_to(REPO)}"
HERE = "{}.{}".format(*sys.version_info[:2])


def input_requirements() -> list[Requirement]:
    """requirements.txt's requirements, comments dropped."""
    lines = (line.partition("#")[0].strip() for line in INPUT.read_text(encoding="utf-8").splitlines())
    return [Requirement(line) for line in lines if line]


def applies_here(entry: Locked) -> bool:
    return entry.marker is None or Marker(entry.marker).evaluate()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_every_locked_package_is_installed_here_at_its_locked_version() -> None:
    lock = [entry for entry in read_lock() if applies_here(entry)]
    assert len(lock) > 50, "expected MLflow's whole dependency tree in the lock"
    differ = {
        entry.name: f"locked {entry.version}, installed {installed_version(entry.name)}"
        for entry in lock if installed_version(entry.name) != entry.version
    }  # fmt: skip
    assert not differ, f"the tests do not run what the image ships (run `make install`): {differ}"


def test_the_locks_top_level_packages_are_requirements_txt_at_its_pins() -> None:
    top = {entry.name: entry for entry in read_lock() if INPUT_SOURCE in entry.via}
    wanted = {canonical(requirement.name): requirement for requirement in input_requirements()}
    assert set(top) == set(wanted), f"{LOCK.name} was compiled from another {INPUT.name}: run `make lock`"
    stale = {
        name: f"{INPUT.name} wants {requirement.specifier}, the lock has {top[name].version}"
        for name, requirement in wanted.items()
        if not requirement.specifier.contains(top[name].version, prereleases=True)
    }  # fmt: skip
    assert not stale, f"run `make lock`: {stale}"


def test_the_lock_holds_every_dependency_here_and_nothing_else() -> None:
    """Walk the installed (= locked) packages' metadata from requirements.txt: the image installs with --no-deps."""
    locked = {entry.name: entry for entry in read_lock() if applies_here(entry)}
    todo = [
        (canonical(requirement.name), frozenset(requirement.extras))
        for requirement in input_requirements() if not requirement.marker or requirement.marker.evaluate()
    ]  # fmt: skip
    seen: set[tuple[str, frozenset[str]]] = set()
    problems = []
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in metadata.requires(name) or []:
            dependency = Requirement(text)
            if dependency.marker and not any(dependency.marker.evaluate({"extra": e}) for e in extras | {""}):
                continue
            needed = canonical(dependency.name)
            if needed not in locked:
                problems.append(f"{name} needs {dependency}, which the lock lacks")
            elif not dependency.specifier.contains(locked[needed].version, prereleases=True):
                problems.append(f"{name} needs {dependency}, the lock has {locked[needed].version}")
            else:
                todo.append((needed, frozenset(dependency.extras)))
    assert not problems, "run `make lock`: " + "; ".join(problems)
    unused = set(locked) - {name for name, _ in seen}
    assert not unused, f"locked but needed by nothing in {INPUT.name} (run `make lock`): {sorted(unused)}"


def test_each_package_is_locked_once_with_hashes() -> None:
    lock = read_lock()
    names = [entry.name for entry in lock]
    assert len(names) == len(set(names)), "one version per package for every platform (--fork-strategy fewest)"
    assert all(entry.hashes for entry in lock), [entry.name for entry in lock if not entry.hashes]
    # Every hash of the file belongs to a package (the parser lost none).
    assert sum(len(entry.hashes) for entry in lock) == LOCK.read_text(encoding="utf-8").count("--hash=")


def test_the_lock_was_compiled_for_both_architectures_on_the_tests_python() -> None:
    command = compile_command()
    assert command[:3] == ["uv", "pip", "compile"], command
    # Universal: markers instead of one platform's answers, so x86_64 and aarch64 get the same lock.
    assert "--universal" in command and "--generate-hashes" in command, command
    assert option(command, "--fork-strategy") == "fewest", command
    assert option(command, "--python-version") == HERE, f"the lock is for Python {option(command, '--python-version')}"
    assert option(command, "-o") == str(LOCK.relative_to(REPO)) and str(INPUT.relative_to(REPO)) in command


def test_the_image_runs_the_tests_python_minor() -> None:
    assert "{}.{}".format(*image_python()) == HERE, "the image and the tests run different Python minors"


def test_the_image_installs_the_hashed_lock_and_nothing_else() -> None:
    found = instructions(dockerfile("mlflow"))
    copied = [args.split() for keyword, args in found if keyword == "COPY"]
    assert ["requirements.lock", "/opt/mlflow/requirements.lock"] in copied
    assert not any(INPUT.name in words for words in copied), "the unhashed requirements.txt is not the image's"
    installs = [args for keyword, args in found if keyword == "RUN" and "pip install" in args]
    assert len(installs) == 1, installs
    words = installs[0].split()
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(words), installs[0]
    assert words[words.index("-r") + 1] == "/opt/mlflow/requirements.lock" and words.count("-r") == 1
