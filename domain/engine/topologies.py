"""How each of the seven topology types runs, driven by its typed config.

Each function takes the :class:`~.run.Run` and the typed config and returns the
execution's output (a JSON object), or raises :class:`~.run.TopologyFailed`.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from qmcp_agents.domain.aggregation import Aggregate, aggregate, diversified, synthesis
from qmcp_agents.domain.capabilities import has_skill
from qmcp_agents.domain.consensus import decide
from qmcp_agents.domain.enums import (
    AggregationMethod,
    ConsensusMethod,
    ExecutionStatus,
    MessageType,
    TopologyType,
)
from qmcp_agents.domain.execution import Execution, ExecutionRead
from qmcp_agents.domain.queries import MAX_LIMIT
from qmcp_agents.domain.seating import MEDIATOR_ROLES, MEDIATOR_SLOT, mediator_seat, synthesizer_seat
from qmcp_agents.domain.topology_configs import (
    ChainOfCommandConfig,
    CompoundConfig,
    CrossCheckConfig,
    DebateConfig,
    DelegationConfig,
    EnsembleConfig,
    PipelineConfig,
    TopologyConfig,
)
from qmcp_agents.domain.votes import Answer, canonical

from .agents import AgentReply
from .budget import tokens_of, usage_of
from .durable import child_fence
from .run import AgentFailed, ChildPaused, Member, Run, TopologyFailed, settle

CHILD_ANSWER = "child_answer"
"""Key of a compound execution's ``metadata`` holding a person's answer for its paused
child (``{"execution_id", "answer"}``) until the child is resumed with it."""


def answer_of(reply: AgentReply) -> Any:
    """The value an agent's output stands for in votes: ``output["answer"]`` if present,
    else the whole output."""
    return reply.output.get("answer", reply.output)


def _answers(run: Run, replies: list[tuple[Member, AgentReply]]) -> list[Answer]:
    return [
        Answer(m.slot, answer_of(r), run.weight(m, r), r.confidence, m.position, arrival)
        for arrival, (m, r) in enumerate(replies)
    ]


async def _ask_all(
    run: Run,
    members: list[Member],
    call: Callable[[Member], tuple[str, dict[str, Any]]],
    round_number: int = 0,
    transcript: list[dict[str, Any]] | None = None,
) -> list[tuple[Member, AgentReply]]:
    """Ask several members at once; replies in member order."""

    async def one(member: Member) -> tuple[Member, AgentReply]:
        name, task = call(member)
        return member, await run.ask(member, name, task, round_number, transcript or [])

    return await settle([one(m) for m in members])


def _mediator(run: Run, named: str | None = None) -> Member:
    """The member that decides (see :mod:`qmcp_agents.domain.seating`); the store refuses
    a topology without one, so this fails only for data saved by an older release."""
    found = run.at(mediator_seat([m.seat for m in run.members], named))
    if found is None:
        raise TopologyFailed(
            f"{run.topology.topology_type.value} {run.topology.name!r} decides by mediator but no member "
            f"mediates (mediator_agent_name, slot {MEDIATOR_SLOT!r}, role {' or '.join(MEDIATOR_ROLES)})",
            {"consensus_method": ConsensusMethod.MEDIATOR_DECISION.value},
        )
    return found


# --- debate ----------------------------------------------------------------------------


def _debate_call(run: Run, round_number: int, member: Member) -> tuple[str, dict[str, Any]]:
    return f"round-{round_number}/{member.slot}", {"input": run.input, "round": round_number}


async def debate(run: Run, config: DebateConfig) -> dict[str, Any]:
    by_mediator = config.consensus_method is ConsensusMethod.MEDIATOR_DECISION
    mediator = _mediator(run, config.mediator_agent_name) if by_mediator else None
    debaters = [m for m in run.members if m is not mediator]
    if not debaters:
        raise TopologyFailed(f"debate {run.topology.name!r} has no debaters")
    transcript: list[dict[str, Any]] = []
    replies: list[tuple[Member, AgentReply]] = []
    rounds = 0
    for round_number in range(1, config.max_rounds + 1):
        rounds = round_number
        replies = await _ask_all(
            run,
            debaters,
            partial(_debate_call, run, round_number),
            round_number,
            list(transcript),
        )
        transcript.extend({"round": round_number, "slot": m.slot, "answer": answer_of(r)} for m, r in replies)
        answers = _answers(run, replies)
        agreement = max(
            sum(1 for a in answers if canonical(a.value) == canonical(b.value)) for b in answers
        ) / len(answers)
        if config.allow_early_termination and agreement >= config.convergence_threshold:
            break
    answers = _answers(run, replies)
    decision_answer = None
    if mediator is not None:
        verdict = await run.ask(
            mediator, "verdict", {"input": run.input, "positions": transcript}, rounds, transcript
        )
        decision_answer = Answer(
            mediator.slot, answer_of(verdict), 1.0, verdict.confidence, mediator.position
        )
    outcome = decide(config.consensus_method, answers, decision_answer)
    return {
        "decision": outcome.value,
        "consensus": outcome.reached,
        "support": outcome.support,
        "method": outcome.method.value,
        "rounds": rounds,
    }


# --- chain of command ------------------------------------------------------------------


def _levels(run: Run, config: ChainOfCommandConfig) -> list[Member]:
    """Members from the top of the chain down: by authority level when the slot names a
    level, otherwise by position."""
    rank = {level: i for i, level in enumerate(config.authority_levels)}
    return sorted(run.members, key=lambda m: (rank.get(m.slot, len(rank)), m.position))


async def chain_of_command(run: Run, config: ChainOfCommandConfig) -> dict[str, Any]:
    chain = _levels(run, config)[: config.max_delegation_depth + 1]
    task: dict[str, Any] = {"input": run.input}
    # Orders flow down: each level turns the task into a directive for the next.
    for depth, (superior, subordinate) in enumerate(itertools.pairwise(chain)):
        directive = await run.ask(superior, f"direct/{superior.slot}", task, depth)
        task = {"input": run.input, "directive": directive.output}
        await run.say(superior, MessageType.REQUEST, task, depth, recipient=subordinate)
    # The lowest level reached does the work; low confidence escalates upwards.
    level = len(chain) - 1
    result = await run.ask(chain[level], f"execute/{chain[level].slot}", task, level)
    escalations = 0
    while (
        result.confidence if result.confidence is not None else 1.0
    ) < config.escalation_threshold and level > 0:
        await run.say(
            chain[level],
            MessageType.ESCALATION,
            {"task": task, "confidence": result.confidence},
            level,
            recipient=chain[level - 1],
        )
        escalations += 1
        level -= 1
        result = await run.ask(
            chain[level], f"escalated/{chain[level].slot}", {**task, "escalated": result.output}, level
        )
    return {
        "result": result.output,
        "answered_by": chain[level].slot,
        "escalations": escalations,
        "confidence": result.confidence,
    }


# --- delegation --------------------------------------------------------------------------


async def delegation(run: Run, config: DelegationConfig) -> dict[str, Any]:
    tasks = run.input.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        tasks = [run.input]
    fallback = run.by_name(config.fallback_agent_name) if config.fallback_agent_name else None
    load = {m.slot: 0 for m in run.members}
    tokens = {m.slot: 0 for m in run.members}
    assignments = []
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise TopologyFailed(f"delegation task {index} must be a JSON object, got {task!r}")
        wanted = task.get("capability")
        if config.routing_strategy == "capability_match" and wanted is not None:
            candidates = [m for m in run.members if has_skill(m.agent_type, str(wanted))]
        else:
            candidates = list(run.members)
        if not candidates:
            if fallback is None:
                raise TopologyFailed(
                    f"no member can do task {index} (capability {wanted!r}) and no fallback is set",
                    {"task": index, "capability": wanted},
                )
            candidates = [fallback]
        if config.load_balance:  # the least work so far: tokens spent, then tasks taken
            chosen = min(candidates, key=lambda m: (tokens[m.slot], load[m.slot], m.position))
        elif config.routing_strategy == "round_robin":  # strictly in turn
            chosen = min(candidates, key=lambda m: (load[m.slot], m.position))
        else:
            chosen = min(candidates, key=lambda m: m.position)
        load[chosen.slot] += 1
        reply = await run.ask(chosen, f"task-{index}/{chosen.slot}", task, 0)
        tokens[chosen.slot] += tokens_of(reply.token_usage or {})
        assignments.append({"task": index, "slot": chosen.slot, "output": reply.output})
    return {"assignments": assignments}


# --- cross-check -------------------------------------------------------------------------


async def cross_check(run: Run, config: CrossCheckConfig) -> dict[str, Any]:
    by_mediator = config.consensus_method is ConsensusMethod.MEDIATOR_DECISION
    mediator = _mediator(run) if by_mediator else None
    pool = sorted((m for m in run.members if m is not mediator), key=lambda m: m.position)
    checkers = pool[: config.num_checkers]
    specialisations = config.checker_specializations

    def focus(member: Member) -> str | None:
        index = checkers.index(member)
        return specialisations[index] if index < len(specialisations) else None

    def task(member: Member) -> tuple[str, dict[str, Any]]:
        return f"check/{member.slot}", {"input": run.input, "specialization": focus(member)}

    replies = await _ask_all(run, checkers, task)
    answers = _answers(run, replies)
    if mediator is not None:
        # The mediator reads every check and decides; approval is its decision too.
        checks = [
            {"slot": m.slot, "specialization": focus(m), "answer": answer_of(r), "confidence": r.confidence}
            for m, r in replies
        ]
        verdict = await run.ask(mediator, "verdict", {"input": run.input, "checks": checks})
        decision = Answer(mediator.slot, answer_of(verdict), 1.0, verdict.confidence, mediator.position)
        outcome = decide(ConsensusMethod.MEDIATOR_DECISION, answers, decision)
        said = verdict.output.get("approved")
        approved = said if isinstance(said, bool) else outcome.reached
    else:
        outcome = decide(config.consensus_method, answers)
        approved = outcome.reached
    if config.require_unanimous_for_approval:
        approved = approved and all(canonical(a.value) == canonical(outcome.value) for a in answers)
    for member, reply in replies:
        await run.say(
            member,
            MessageType.FEEDBACK,
            {"answer": answer_of(reply), "agrees": canonical(answer_of(reply)) == canonical(outcome.value)},
        )
    return {
        "answer": outcome.value,
        "approved": approved,
        "support": outcome.support,
        "method": config.consensus_method.value,
        **({"decided_by": mediator.slot} if mediator is not None else {}),
    }


# --- ensemble --------------------------------------------------------------------------


async def ensemble(run: Run, config: EnsembleConfig) -> dict[str, Any]:
    by_synthesis = config.aggregation_method is AggregationMethod.SYNTHESIS
    synthesizer = run.at(synthesizer_seat([m.seat for m in run.members])) if by_synthesis else None
    answering = [m for m in run.members if m is not synthesizer]
    if not answering:
        raise TopologyFailed(f"ensemble {run.topology.name!r} has no members to answer")

    async def one(member: Member) -> tuple[Member, AgentReply | AgentFailed]:
        try:
            return member, await run.ask(member, f"answer/{member.slot}", {"input": run.input})
        except AgentFailed as failure:
            return member, failure

    outcomes = await settle([one(m) for m in answering])
    failed = [m.slot for m, r in outcomes if isinstance(r, AgentFailed)]
    succeeded = [(m, r) for m, r in outcomes if isinstance(r, AgentReply)]
    share = len(failed) / len(outcomes) if outcomes else 1.0
    if not succeeded or share > config.failure_threshold:
        raise TopologyFailed(
            f"{len(failed)} of {len(outcomes)} ensemble members failed, more than the failure threshold "
            f"{config.failure_threshold:g}",
            {"failed": failed, "failure_threshold": config.failure_threshold},
        )
    answers = _answers(run, succeeded)
    if by_synthesis:
        result = await _synthesize(run, synthesizer, answers, config.diversity_weight)
    else:
        result = aggregate(config.aggregation_method, answers, diversity_weight=config.diversity_weight)
    return {
        "result": result.value,
        "method": result.method.value,
        "fallback": result.fallback,
        "failed": failed,
        **({"synthesized_by": synthesizer.slot} if synthesizer is not None else {}),
    }


async def _synthesize(
    run: Run, member: Member | None, answers: list[Answer], diversity_weight: float
) -> Aggregate:
    """``synthesis`` as an awaited call: the synthesizer member is asked (and recorded like
    any answer), else the engine's synthesizer function (plain or async) is awaited; if it
    fails, the answers are concatenated (``fallback``)."""
    weighed = sorted(diversified(answers, diversity_weight), key=lambda a: (a.position, a.agent))
    if member is not None:
        task = {
            "input": run.input,
            "answers": [
                {"slot": a.agent, "answer": a.value, "confidence": a.confidence, "weight": a.weight}
                for a in weighed
            ],
            "diversity_weight": diversity_weight,
        }
        try:
            verdict = await run.ask(member, "synthesis", task)
        except AgentFailed:
            return synthesis(answers)
        return synthesis(answers, lambda _: answer_of(verdict))
    if run.synthesizer is None:
        return synthesis(answers)
    try:
        value = run.synthesizer(weighed)
        if inspect.isawaitable(value):
            value = await value
    except Exception:  # any failure of the synthesizer falls back to concat, by definition
        return synthesis(answers)
    return synthesis(answers, lambda _: value)


# --- pipeline ----------------------------------------------------------------------------


async def pipeline(run: Run, config: PipelineConfig) -> dict[str, Any]:
    ordered = sorted(run.members, key=lambda m: m.position)
    stages = config.stages or [m.slot for m in ordered]
    start = int(run.execution.metadata.get("start_stage", 0))
    data: Any = run.execution.metadata.get("start_input", run.input) if start else run.input
    outputs: dict[str, Any] = {}
    for index in range(start, len(stages)):
        stage = stages[index]
        member = run.member(stage)
        tries = 1 + (config.max_stage_retries if config.retry_failed_stages else 0)
        for attempt in range(1, tries + 1):
            try:
                reply = await run.ask(
                    member, f"stage-{index}/{stage}/try-{attempt}", {"input": data, "stage": stage}, index
                )
                break
            except AgentFailed as failure:
                if attempt == tries:
                    raise TopologyFailed(
                        f"pipeline stage {stage!r} failed after {tries} attempt(s)",
                        {
                            "stage": stage,
                            "stage_index": index,
                            **failure.details,
                            "checkpoint": run.execution.metadata.get("checkpoint"),
                        },
                    ) from failure
        data = reply.output
        outputs[stage] = reply.output
        if stage in config.checkpoint_after:
            await run.engine.checkpoint(run, {"stage": stage, "stage_index": index, "output": data})
    return {"result": data, "stages": outputs}


# --- compound ----------------------------------------------------------------------------


async def compound(run: Run, config: CompoundConfig) -> dict[str, Any]:
    engine = run.engine
    fence = child_fence(run.fence)  # a worker's children are written under its lease
    earlier = await _earlier_children(run, config.sub_topologies)
    answer = run.execution.metadata.get(CHILD_ANSWER) or {}

    async def child(name: str, data: dict[str, Any]) -> dict[str, Any]:
        found = earlier.get(name)
        if found is None:
            limits = run.budget.child_limits()
            read = await engine._run(
                name,
                data,
                parent_id=run.execution.id,
                token_budget=limits.token_budget,
                time_limit_seconds=limits.time_limit_seconds,
                fence=fence,
            )
        elif found.status is ExecutionStatus.PAUSED and answer.get("execution_id") == str(found.id):
            read = await engine._resume(found.id, answer.get("answer"), fence)
        elif found.status is ExecutionStatus.RUNNING:  # its driver died: a takeover drives it on
            read = await engine._drive_on(found.id, fence)
        else:  # run before this execution paused: its outcome stands
            read = ExecutionRead.from_entity(found)
        run.budget.add(usage_of(read.metadata))
        if read.status is ExecutionStatus.PAUSED:
            raise ChildPaused(name, read.id, read.metadata.get("awaiting_human") or {})
        limit = (read.error_details or {}).get("limit")
        if isinstance(limit, str):
            raise run.budget.exceeded(limit)
        if read.status is not ExecutionStatus.COMPLETED:
            raise TopologyFailed(
                f"sub-topology {name!r} ended {read.status.value}: {read.error}",
                {"sub_topology": name, "execution_id": str(read.id)},
            )
        run.budget.check_tokens()
        return dict(read.output_data or {})

    if config.composition_type == "parallel":
        results = await settle([child(name, run.input) for name in config.sub_topologies])
        return {"results": dict(zip(config.sub_topologies, results, strict=True))}
    if config.composition_type == "conditional":
        route = run.input.get("route")
        if route not in config.sub_topologies:
            raise TopologyFailed(
                f"conditional composition needs input 'route' naming one of {config.sub_topologies}, "
                f"got {route!r}",
                {"route": route},
            )
        return {"route": route, "result": await child(str(route), run.input)}
    data = run.input
    for name in config.sub_topologies:
        data = handoff(await child(name, data))
    return {"result": data}


async def _earlier_children(run: Run, names: list[str]) -> dict[str, Execution]:
    """The child execution of each sub-topology started by an earlier drive of this
    execution (before it paused), so a resumed compound does not run them again."""
    children = (await run.store.executions.list(parent_id=run.execution.id, limit=MAX_LIMIT)).items
    if not children:
        return {}
    found: dict[str, Execution] = {}
    for name in names:
        topology = await run.store.topologies.get_by_name(name)
        mine = [c for c in children if c.topology_id == topology.id]
        if mine:
            found[name] = max(mine, key=lambda c: (c.started_at, c.id))
    return found


def handoff(output: dict[str, Any]) -> dict[str, Any]:
    """What a sequential composition passes on: the output's ``result`` when it is an
    object (pipelines, ensembles, chains and compounds put their answer there), else the
    whole output."""
    result = output.get("result")
    return dict(result) if isinstance(result, dict) else output


Strategy = Callable[[Run, Any], Awaitable[dict[str, Any]]]
STRATEGIES: dict[TopologyType, Strategy] = {
    TopologyType.DEBATE: debate,
    TopologyType.CHAIN_OF_COMMAND: chain_of_command,
    TopologyType.DELEGATION: delegation,
    TopologyType.CROSS_CHECK: cross_check,
    TopologyType.ENSEMBLE: ensemble,
    TopologyType.PIPELINE: pipeline,
    TopologyType.COMPOUND: compound,
}


async def execute(run: Run, config: TopologyConfig) -> dict[str, Any]:
    return await STRATEGIES[run.topology.topology_type](run, config)
