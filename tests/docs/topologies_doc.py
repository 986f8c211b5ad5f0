"""docs/topologies.md, generated from the typed config classes so it cannot drift.

Names, types, defaults and bounds come from the Pydantic fields; what the engine does with
each key is written here, once per field (``test_topologies_doc`` fails when a field has
no note or the doc differs). Regenerate with::

    .venv/bin/python -m tests.docs.topologies_doc > docs/topologies.md
"""

from __future__ import annotations

import json
import types
import typing
from enum import Enum
from typing import Any

import annotated_types
from pydantic.fields import FieldInfo

from qmcp_agents.domain.enums import TopologyType
from qmcp_agents.domain.topology_configs import CONFIG_TYPES, TopologyConfig

TITLES = {
    TopologyType.DEBATE: "Debate",
    TopologyType.CHAIN_OF_COMMAND: "Chain of command",
    TopologyType.DELEGATION: "Delegation",
    TopologyType.CROSS_CHECK: "Cross-check",
    TopologyType.ENSEMBLE: "Ensemble",
    TopologyType.PIPELINE: "Pipeline",
    TopologyType.COMPOUND: "Compound",
}

MEDIATOR = (
    "the member in slot `mediator`, else the first `coordinator`, else the first `synthesizer` (by position)"
)

HOW = {
    TopologyType.DEBATE: (
        "Every member but the mediator debates: each round they all answer at once, seeing the "
        "transcript so far. Input: any JSON object. Output: `decision`, `consensus`, `support`, "
        "`method`, `rounds`."
    ),
    TopologyType.CHAIN_OF_COMMAND: (
        "Members sit on the authority levels from the top down (in `agent_names` order). Each "
        "level turns the task into a directive for the next (a `request` message); the lowest "
        "level reached does the work. Output: `result`, `answered_by`, `escalations`, `confidence`."
    ),
    TopologyType.DELEGATION: (
        "Input `tasks`: a list of JSON objects (without it the whole input is one task); a task's "
        "`capability` asks for a capability or skill tag. Each task goes to one member. Output: "
        "`assignments` (task, slot, output)."
    ),
    TopologyType.CROSS_CHECK: (
        "The checkers answer the same input independently, in parallel, then each gets a "
        "`feedback` message saying whether it agrees with the outcome. Output: `answer`, "
        "`approved`, `support`, `method` (and `decided_by` with a mediator)."
    ),
    TopologyType.ENSEMBLE: (
        "Every member (but the synthesizer) answers the input in parallel; a failed member does not "
        "fail the run unless too many fail. Output: `result`, `method`, `fallback`, `failed`."
    ),
    TopologyType.PIPELINE: (
        "Stages run in order, each fed the previous stage's output (the first gets the input). "
        "Output: `result` (the last stage's output) and `stages` (every stage's output)."
    ),
    TopologyType.COMPOUND: (
        "Runs other topologies as child executions (it has no members of its own); token and "
        "time budgets are shared with the children. Output: `result` (or `results` when parallel)."
    ),
}

NOTES: dict[tuple[TopologyType, str], str] = {
    (TopologyType.DEBATE, "max_rounds"): "The most rounds of argument.",
    (TopologyType.DEBATE, "consensus_method"): (
        "How the last round's answers become the decision. `mediator`: after the last round the "
        "mediator reads every position and its answer is the decision."
    ),
    (TopologyType.DEBATE, "convergence_threshold"): (
        "After each round, the share of debaters giving the most common answer; at or above this "
        "the debate stops early. Refused when `allow_early_termination` is false."
    ),
    (TopologyType.DEBATE, "allow_early_termination"): "False: always `max_rounds` rounds.",
    (TopologyType.DEBATE, "mediator_agent_name"): (
        f"Agent type name of the member who mediates; unset: {MEDIATOR}. With `mediator` a "
        "mediator must exist (checked on save); refused with any other method."
    ),
    (TopologyType.CHAIN_OF_COMMAND, "authority_levels"): (
        "The slots, from the top down; one member each (more members than levels is refused)."
    ),
    (TopologyType.CHAIN_OF_COMMAND, "escalation_threshold"): (
        "An answer with confidence below this goes up one level (an `escalation` message) and "
        "that level answers again; repeated up to the top. No confidence counts as 1.0."
    ),
    (TopologyType.CHAIN_OF_COMMAND, "max_delegation_depth"): (
        "How many levels below the top orders go down; members below that depth are not asked."
    ),
    (TopologyType.DELEGATION, "routing_strategy"): (
        "`capability_match`: a task naming a `capability` goes to a member with that capability or "
        "skill tag, a task naming none to any member. `round_robin`: every member in turn."
    ),
    (TopologyType.DELEGATION, "load_balance"): (
        "Among the candidates, the member that has spent the fewest tokens, then taken the fewest "
        "tasks. False: `round_robin` takes turns by tasks taken; `capability_match` takes the "
        "first candidate by position."
    ),
    (TopologyType.DELEGATION, "fallback_agent_name"): (
        "Agent type name of the member that takes a task no member has the capability for; unset, "
        "such a task fails the run. Refused with `round_robin`."
    ),
    (TopologyType.CROSS_CHECK, "num_checkers"): (
        "The first this many members by position (the mediator excepted) check. With `mediator` "
        "there must be this many members besides the mediator."
    ),
    (TopologyType.CROSS_CHECK, "consensus_method"): (
        f"How the checks become the answer. `mediator`: {MEDIATOR} reads every check and decides; "
        "a boolean `approved` in its output decides approval."
    ),
    (TopologyType.CROSS_CHECK, "require_unanimous_for_approval"): (
        "Approved only when every checker gave the outcome's answer."
    ),
    (TopologyType.CROSS_CHECK, "checker_specializations"): (
        "The i-th checker gets the i-th entry as `specialization` in its task; at most "
        "`num_checkers` entries."
    ),
    (TopologyType.ENSEMBLE, "aggregation_method"): (
        "How the answers combine: `vote` (most common), `average` (numbers), `weighted` "
        "(confidence-weighted), `concat` (all of them), `best_of` (the heaviest), `synthesis` (the "
        "member in slot `synthesizer` or the first `synthesizer` combines them; without one, the "
        "engine's synthesizer function; if that fails, `concat`)."
    ),
    (TopologyType.ENSEMBLE, "diversity_weight"): (
        "A lone answer (no other member gave it) weighs `1 + diversity_weight` times as much. "
        "Used by `weighted`, `best_of` and `synthesis`; refused with the others."
    ),
    (TopologyType.ENSEMBLE, "failure_threshold"): (
        "The run fails when the share of members that failed is above this (or all failed)."
    ),
    (TopologyType.PIPELINE, "stages"): (
        "Stage names in order; the members sit in these slots, one per stage (empty: one stage "
        "per member, in position order, named by its slot)."
    ),
    (TopologyType.PIPELINE, "checkpoint_after"): (
        "After these stages the execution records a checkpoint (the stage's output), so a failed "
        "run can resume from it. Only names in `stages`."
    ),
    (TopologyType.PIPELINE, "retry_failed_stages"): "A stage whose agent fails is asked again.",
    (TopologyType.PIPELINE, "max_stage_retries"): (
        "Retries per stage after the first try; then the run fails naming the stage. Refused when "
        "`retry_failed_stages` is false."
    ),
    (TopologyType.COMPOUND, "sub_topologies"): (
        "Names of existing topologies to run (checked on save: they exist and never lead back to this one)."
    ),
    (TopologyType.COMPOUND, "composition_type"): (
        "`sequential`: each runs on the previous one's output (its `result` when that is an "
        "object); `parallel`: all at once on the input; `conditional`: the one named by the "
        "input's `route`."
    ),
}


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is typing.Annotated:
        return _type(args[0])
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    if annotation is type(None):
        return "null"
    names = {int: "integer", float: "number", bool: "boolean", str: "text"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_of(field: FieldInfo) -> Any:
    value = field.get_default(call_default_factory=True)
    return value.value if isinstance(value, Enum) else value


def _checked(config_class: type[TopologyConfig]) -> set[str]:
    """Fields with a validator of their own (on these configs: no repeated entries)."""
    validators = config_class.__pydantic_decorators__.field_validators.values()
    return {name for v in validators for name in v.info.fields}


def _bounds(field: FieldInfo, unique: bool) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"at least {item.min_length} item(s)")
    if unique:
        parts.append("no repeats")
    return ", ".join(parts) or "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    lines = [
        "# Topology types and their config keys",
        "",
        "<!-- Generated by tests/docs/topologies_doc.py from the config classes in",
        "     domain/topology_configs.py; tests/docs/test_topologies_doc.py fails if it drifts. -->",
        "",
        "A topology's `config` is a JSON object checked against its type's keys: an unknown key,",
        'a value of the wrong type (`"3"` is not `3`) or out of bounds is refused with one line,',
        "and so is a key the rest of the config makes meaningless (it would be ignored). A key left",
        "out takes its default; the stored config keeps only the keys you set.",
        "",
    ]
    for kind, config_class in CONFIG_TYPES.items():
        lines += [f"## {TITLES[kind]} (`{kind.value}`)", "", (config_class.__doc__ or "").strip(), ""]
        lines += [HOW[kind], ""]
        lines += ["| key | type | default | bounds | what the engine does |", "|---|---|---|---|---|"]
        checked = _checked(config_class)
        for name, field in config_class.model_fields.items():
            default = json.dumps(default_of(field))
            bounds = _bounds(field, name in checked)
            kind_of = _cell(_type(field.annotation))
            lines.append(f"| `{name}` | {kind_of} | `{default}` | {bounds} | {_cell(NOTES[(kind, name)])} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
