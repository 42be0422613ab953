"""A small instruction set with checkable answers, for instruction tuning (lesson 16).

Each :class:`Instruction` is a task name, the instruction a user would type, and the one right answer, so a
model's reply can be scored by **exact match**. Five tasks:

* ``add``      — ``"Add 23 and 45"`` → ``"68"``
* ``reverse``  — ``"Reverse stone"`` → ``"enots"``
* ``upper``    — ``"Uppercase stone"`` → ``"STONE"``
* ``count``    — ``"Count the letters in stone"`` → ``"5"``
* ``date``     — ``"Write 2024-03-05 as DD/MM/YYYY"`` → ``"05/03/2024"``

:func:`prompt` wraps an instruction in the lesson's template; the reply ends with :data:`END`.
:func:`train_test_instructions` draws a training set and a **held-out** test set: the test instructions never
occur in training, and the words of the word tasks are split too (a test word is never seen in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Instruction", "TASKS", "TEMPLATE", "END", "WORDS", "prompt", "make_instructions",
           "train_test_instructions", "exact_match", "wrong_answer"]

TASKS = ("add", "reverse", "upper", "count", "date")
TEMPLATE = "Instruction: {instruction}\nAnswer: "   # the reply follows the template, then END
END = "\n"

# common English words of 3–7 letters (lower case): the word tasks draw from these
WORDS = tuple("""
able acid aged also area army away baby back ball band bank base bath bear beat bell belt best bird blow blue
boat body bone book born both bowl burn bush busy cake call calm camp card care cart case cash cast cell chat
chip city club coal coat code cold cook cool cope copy core cost crew crop dark data date dawn dead deal dear
debt deep desk diet dish dock door down draw drop drug dust duty earn east easy edge else even ever face fact
fair fall farm fast fate fear feel file fill film find fine fire firm fish flat flow food foot form fort four
free fuel full fund gain game gate gift girl give glad goal gold golf good grow hair half hall hand hang hard
harm head hear heat held hell help here hero high hill hint hold hole home hope host hour huge hunt idea inch
iron item jazz join joke jump jury just keen keep kick kind king knee know lack lady lake land lane last late
lead left lend less life lift like line link list live load loan lock long look lord lose loss loud love luck
apple beach bread brick chair chalk cloud crown dance dream drink earth field flame fruit glass grape grass
green heart horse house juice knife laugh lemon light money month mouse music night ocean paper party peace
piano plant plate queen radio river robot salad sheep shirt smile snake sound space spoon storm sugar table
tiger toast tooth train water whale wheel world youth
""".split())


@dataclass(frozen=True)
class Instruction:
    task: str
    instruction: str
    answer: str


def prompt(instruction: str) -> str:
    """The text the model is given: the template with the instruction filled in (the answer comes next)."""
    return TEMPLATE.format(instruction=instruction)


def _one(task: str, rng: np.random.Generator, words: Sequence[str]) -> Instruction:
    if task == "add":
        a, b = (int(v) for v in rng.integers(10, 50, size=2))
        return Instruction(task, f"Add {a} and {b}", str(a + b))
    if task == "date":
        y, m, d = int(rng.integers(1990, 2030)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
        return Instruction(task, f"Write {y}-{m:02d}-{d:02d} as DD/MM/YYYY", f"{d:02d}/{m:02d}/{y}")
    w = str(words[int(rng.integers(len(words)))])
    if task == "reverse":
        return Instruction(task, f"Reverse {w}", w[::-1])
    if task == "upper":
        return Instruction(task, f"Uppercase {w}", w.upper())
    if task == "count":
        return Instruction(task, f"Count the letters in {w}", str(len(w)))
    raise ValueError(f"parameter 'task' must be one of {TASKS}, got {task!r}")


def make_instructions(n: int, seed: int = 0, tasks: Sequence[str] = TASKS, words: Sequence[str] = WORDS,
                      exclude: set | frozenset = frozenset(), distinct: bool = True) -> list[Instruction]:
    """``n`` instructions, the tasks in turn (``tasks[i % len(tasks)]``), none of whose instruction text is in
    ``exclude``; all different if ``distinct``. Deterministic for a given ``seed``."""
    if n < 0:
        raise ValueError(f"parameter 'n' must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    out, seen = [], set(exclude)
    tries = 0
    while len(out) < n:
        ex = _one(tasks[len(out) % len(tasks)], rng, words)
        tries += 1
        if tries > 1000 * (n + 10):
            raise ValueError(f"cannot draw {n} distinct instructions from these tasks and words")
        if ex.instruction in seen:
            continue
        if distinct:
            seen.add(ex.instruction)
        out.append(ex)
    return out


def train_test_instructions(n_train: int, n_test: int, seed: int = 0, test_word_fraction: float = 0.25,
                            tasks: Sequence[str] = TASKS) -> tuple[list[Instruction], list[Instruction]]:
    """A training set and a held-out test set: no test instruction occurs in training, and the word tasks of
    the test set use words kept out of training (``test_word_fraction`` of :data:`WORDS`). The test
    instructions are all different; training instructions may repeat (they are drawn with replacement)."""
    if not 0 < test_word_fraction < 1:
        raise ValueError(f"parameter 'test_word_fraction' must be between 0 and 1, got {test_word_fraction}")
    perm = np.random.default_rng(seed).permutation(len(WORDS))
    k = max(1, int(round(len(WORDS) * test_word_fraction)))
    test_words = [WORDS[i] for i in sorted(perm[:k])]
    train_words = [WORDS[i] for i in sorted(perm[k:])]
    test = make_instructions(n_test, seed + 1, tasks, test_words)
    train = make_instructions(n_train, seed + 2, tasks, train_words, exclude={e.instruction for e in test},
                              distinct=False)
    return train, test


def exact_match(replies: Sequence[str], answers: Sequence[str]) -> float:
    """The fraction of replies equal to the answer (after stripping spaces at both ends)."""
    if len(replies) != len(answers):
        raise ValueError(f"{len(replies)} replies for {len(answers)} answers")
    if not answers:
        return 0.0
    return float(np.mean([r.strip() == a.strip() for r, a in zip(replies, answers)]))


def wrong_answer(ex: Instruction, rng: np.random.Generator) -> str:
    """A plausible wrong answer to ``ex`` (a rejected answer for preference tuning): a sum off by 1 or 10, a count
    off by one, the date as MM/DD/YYYY, the word not reversed, the word capitalised instead of upper-cased."""
    if ex.task == "add":
        return str(int(ex.answer) + int(rng.choice([-10, -1, 1, 10])))
    if ex.task == "count":
        n = int(ex.answer)
        return str(n + 1 if n == 1 or rng.random() < 0.5 else n - 1)
    if ex.task == "date":
        d, m, y = ex.answer.split("/")
        return f"{m}/{d}/{y}" if d != m else f"{int(d) % 28 + 1:02d}/{m}/{y}"
    if ex.task == "reverse":
        word = ex.instruction.split()[-1]
        return word if word != ex.answer else word[1:] + word[0]
    if ex.task == "upper":
        return ex.answer.capitalize()
    raise ValueError(f"no wrong answer for task {ex.task!r}")
