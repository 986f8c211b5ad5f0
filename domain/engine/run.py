"""One execution in progress: its members, and how an agent is asked and its answer recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from qmcp_agents.domain.agent import AgentConfig, AgentInstance, AgentType
from qmcp_agents.domain.aggregation import Synthesizer
from qmcp_agents.domain.capabilities import CapabilityHookFailed
from qmcp_agents.domain.clock import utc_now
from qmcp_agents.domain.enums import MessageType
from qmcp_agents.domain.execution import Execution
from qmcp_agents.domain.message import MessageCreate, Result
from qmcp_agents.domain.ports import Store
from qmcp_agents.domain.recording import record_call
from qmcp_agents.domain.seating import Seat
from qmcp_agents.domain.topology import Topology, TopologyMembership
from qmcp_agents.domain.transactions import whole

from .agents import Agent, AgentContext, AgentRefused, AgentReply
from .budget import TOKEN_BUDGET, Budget, LimitExceeded, tokens_of
from .capable import CapabilitySet
from .durable import LeaseFence
from .failures import AgentFailed, ChildPaused, HumanInputNeeded, TopologyFailed
from .retry import retried
from .tracing import NO_TRACER, Tracer

T = TypeVar("T")

CALLS = "calls"
"""Key of an instance's ``state`` that keeps its answered calls, so a resumed run replays
them instead of asking again."""


@dataclass
class Member:
    """A topology member taking part in this run."""

    membership: TopologyMembership
    agent_type: AgentType
    config: AgentConfig
    instance: AgentInstance
    agent: Agent
    capabilities: CapabilitySet | None = None

    @property
    def slot(self) -> str:
        return self.membership.slot_name

    @property
    def name(self) -> str:
        return self.agent_type.name

    @property
    def position(self) -> int:
        return self.membership.position

    @property
    def seat(self) -> Seat:
        return Seat(self.slot, self.name, self.agent_type.role.value, self.position)


@dataclass
class Run:
    store: Store
    topology: Topology
    execution: Execution
    members: list[Member]
    timeout_scale: float = 1.0
    synthesizer: Synthesizer | None = None
    weights: Mapping[str, float] = field(default_factory=dict)
    engine: Any = None
    budget: Budget = field(default_factory=Budget)
    fence: Callable[[bool], Awaitable[None]] | None = None
    """Run inside the transaction of every write, by a worker: it raises ``LeaseLost`` once
    the worker's lease was taken over, so a worker that lost an execution cannot commit
    anything more for it (see :mod:`.worker`)."""

    @property
    def tracer(self) -> Tracer:
        return self.engine.tracer if self.engine is not None else NO_TRACER

    @property
    def input(self) -> dict[str, Any]:
        return dict(self.execution.input_data)

    @property
    def human_answers(self) -> dict[str, Any]:
        return dict(self.execution.metadata.get("human_answers", {}))

    def member(self, slot: str) -> Member:
        for member in self.members:
            if member.slot == slot:
                return member
        raise TopologyFailed(f"topology {self.topology.name!r} has no member in slot {slot!r}")

    def at(self, seat: Seat | None) -> Member | None:
        """The member sitting in ``seat`` (see :mod:`qmcp_agents.domain.seating`)."""
        return None if seat is None else self.member(seat.slot)

    def by_name(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        raise TopologyFailed(f"topology {self.topology.name!r} has no member of agent type {name!r}")

    def weight(self, member: Member, reply: AgentReply) -> float:
        """A member's say in a weighted vote: the engine's weights, else its confidence."""
        if member.slot in self.weights:
            return float(self.weights[member.slot])
        return reply.confidence if reply.confidence is not None else 1.0

    async def ask(
        self,
        member: Member,
        call: str,
        task: Mapping[str, Any],
        round_number: int = 0,
        transcript: Sequence[Mapping[str, Any]] = (),
    ) -> AgentReply:
        """Ask ``member`` for call ``call`` (a name unique within the run), honouring its
        timeout and retries; record the answer (message, result, instance state). A call
        already answered in this execution is replayed from the instance's state."""
        done = member.instance.state.get(CALLS, {}).get(call)
        if done is not None:
            return AgentReply.from_json(done)
        context = AgentContext(
            execution_id=self.execution.id,
            topology=self.topology.name,
            topology_type=self.topology.topology_type,
            slot_name=member.slot,
            agent_type=member.agent_type,
            config=member.config,
            call=call,
            task=dict(task),
            round_number=round_number,
            transcript=tuple(transcript),
            human_input=self.human_answers.get(call),
        )
        timeout = member.config.timeout_seconds * self.timeout_scale
        errors: list[str] = []
        refused = False
        for attempt in range(1, member.config.max_retries + 2):
            self._refuse_when_spent()
            started = utc_now()
            try:
                with self.tracer.agent_call(
                    self.execution,
                    self.topology,
                    slot=member.slot,
                    agent_type=member.agent_type,
                    config=member.config,
                    call=call,
                    round_number=round_number,
                    attempt=attempt,
                ) as trace:
                    work = member.capabilities.call(member.agent, context) if member.capabilities else None
                    answer = await asyncio.wait_for(work or member.agent(context), timeout=timeout)
                    trace.answered(answer)
            except CapabilityHookFailed as failed:  # not retried: a hook that failed fails again
                errors.append(str(failed))
                await self.say(
                    member,
                    MessageType.SYSTEM,
                    {"call": call, "attempt": attempt, "error": errors[-1], "capability": failed.capability},
                    round_number,
                )
                self._notify("failure", member, call, round_number, error=errors[-1])
                raise AgentFailed(
                    member.slot, call, errors, capability=failed.capability, hook=failed.hook
                ) from failed
            except TimeoutError:
                errors.append(f"timed out after {timeout:g}s")
            except Exception as error:  # an agent may fail in any way; the run records it
                errors.append(f"{type(error).__name__}: {error}")
                refused = isinstance(error, AgentRefused)
                # An agent that spent tokens before failing may say so on the exception.
                spent = getattr(error, "token_usage", None)
                self.budget.add(spent if isinstance(spent, Mapping) else None)
            else:
                self.budget.add(answer.token_usage)
                too_many = _tool_calls_over(member.config.max_tool_calls, answer)
                if too_many is not None:
                    errors.append(too_many)
                elif answer.needs_human is not None and context.human_input is None:
                    await self.say(
                        member,
                        MessageType.SYSTEM,
                        {"call": call, "question": answer.needs_human},
                        round_number,
                    )
                    self.budget.check_tokens()
                    raise HumanInputNeeded(member.slot, call, answer.needs_human)
                else:
                    await self._record(member, call, answer, started, round_number)
                    self._notify("answer", member, call, round_number, confidence=answer.confidence)
                    self.budget.check_tokens()
                    return answer
            await self.say(
                member,
                MessageType.SYSTEM,
                {"call": call, "attempt": attempt, "error": errors[-1]},
                round_number,
            )
            self._notify("failure", member, call, round_number, error=errors[-1])
            if refused:
                break
        self.budget.check_tokens()
        raise AgentFailed(member.slot, call, errors)

    def _refuse_when_spent(self) -> None:
        """No new call once the whole token budget is used up."""
        budget = self.budget.limits.token_budget
        if budget is not None and self.budget.remaining_tokens() == 0:
            raise LimitExceeded(TOKEN_BUDGET, budget, tokens_of(self.budget.usage))

    def _notify(self, kind: str, member: Member, call: str, round_number: int, **extra: Any) -> None:
        if self.engine is not None:
            self.engine.notify(
                {
                    "event": kind,
                    "topology": self.topology.name,
                    "execution_id": str(self.execution.id),
                    "slot": member.slot,
                    "call": call,
                    "round": round_number,
                    **extra,
                }
            )

    async def say(
        self,
        sender: Member,
        message_type: MessageType,
        content: dict[str, Any],
        round_number: int = 0,
        recipient: Member | None = None,
    ) -> None:
        """Record a message in the execution's transcript (and tell the capabilities of the
        agents it concerns: the sender, the recipient, everyone for a broadcast)."""
        if self.fence is None:
            await self._say(sender, message_type, content, round_number, recipient)
            return
        fence = self.fence

        async def fenced() -> None:
            async with whole(self.store):
                await self._say(sender, message_type, content, round_number, recipient)
                await fence(False)

        await retried(fenced)

    async def _say(
        self,
        sender: Member,
        message_type: MessageType,
        content: dict[str, Any],
        round_number: int,
        recipient: Member | None,
    ) -> None:
        stored = await self.store.messages.append(
            self.execution.id,
            [
                MessageCreate(
                    sender_id=sender.instance.id,
                    recipient_id=recipient.instance.id if recipient is not None else None,
                    message_type=message_type,
                    content=content,
                    round_number=round_number,
                )
            ],
        )
        if any(m.capabilities for m in self.members):
            for member in self.members if recipient is None else [sender, recipient]:
                if member.capabilities:
                    await member.capabilities.fire("on_message", stored[0])

    async def _record(
        self, member: Member, call: str, answer: AgentReply, started: Any, round_number: int
    ) -> None:
        """The answer's message, result and replay entry, together (one transaction where the
        store has them; one statement on PostgreSQL, see :mod:`~qmcp_agents.domain.recording`),
        run again if it loses a race."""
        fence = self.fence
        if any(m.capabilities for m in self.members) or not (fence is None or isinstance(fence, LeaseFence)):
            # Hooks see the stored message inside the transaction, and a fence of unknown
            # make can only be called: the repository calls one by one.
            await self._record_by_calls(member, call, answer, started, round_number)
            return
        lease = fence.hold if isinstance(fence, LeaseFence) else None

        async def record(instance: AgentInstance) -> None:
            if call in instance.state.get(CALLS, {}):
                # An attempt whose commit was reported failed but went through (an
                # ambiguous commit): recorded already, so not recorded twice.
                member.instance = instance
                return
            instance.update_state({CALLS: {**instance.state.get(CALLS, {}), call: answer.to_json()}})
            recorded = await record_call(
                self.store,
                self.execution.id,
                self._response(member, call, answer, round_number),
                self._result(member, answer, started),
                instance,
                lease,
            )
            member.instance = recorded.instance

        tries = 0

        async def write() -> None:
            nonlocal tries
            tries += 1
            if tries == 1:
                # The first try starts from the instance as this run last wrote it (a copy:
                # a failed try leaves it as it was): if it changed since (a concurrent call
                # of the same member, or a drive that took over), the update's revision
                # check refuses it, nothing is written, and the next try starts from the
                # stored instance, read in the transaction that writes.
                await record(member.instance.model_copy())
                return
            async with whole(self.store):
                await record(await self.store.agent_instances.get(member.instance.id))

        await retried(write)

    def _response(self, member: Member, call: str, answer: AgentReply, round_number: int) -> MessageCreate:
        return MessageCreate(
            sender_id=member.instance.id,
            recipient_id=None,
            message_type=MessageType.RESPONSE,
            content={"call": call, "output": answer.output, "confidence": answer.confidence},
            round_number=round_number,
        )

    def _result(self, member: Member, answer: AgentReply, started: Any) -> Result:
        return Result(
            execution_id=self.execution.id,
            agent_instance_id=member.instance.id,
            output=answer.output,
            confidence=answer.confidence,
            reasoning=answer.reasoning,
            token_usage=answer.token_usage,
            started_at=started,
            completed_at=max(utc_now(), started),
        )

    async def _record_by_calls(
        self, member: Member, call: str, answer: AgentReply, started: Any, round_number: int
    ) -> None:
        """:meth:`_record` when members have capabilities (``on_message`` fires with the
        stored message, in the transaction) or the fence is not a worker's lease."""

        tries = 0

        async def write() -> None:
            nonlocal tries
            tries += 1
            async with whole(self.store):
                # The first try starts from the instance as this run last wrote it: if it
                # changed since (a concurrent call of the same member, or a drive that took
                # over), the update's revision check refuses it and the whole transaction is
                # undone and tried again, from the stored instance.
                instance = (
                    member.instance.model_copy()  # a copy: a failed try leaves it as it was
                    if tries == 1
                    else await self.store.agent_instances.get(member.instance.id)
                )
                if call in instance.state.get(CALLS, {}):
                    # An attempt whose commit was reported failed but went through (an
                    # ambiguous commit): recorded already, so not recorded twice.
                    member.instance = instance
                    return
                await self._say(
                    member,
                    MessageType.RESPONSE,
                    {"call": call, "output": answer.output, "confidence": answer.confidence},
                    round_number,
                    None,
                )
                await self.store.results.add(self._result(member, answer, started))
                instance.update_state({CALLS: {**instance.state.get(CALLS, {}), call: answer.to_json()}})
                member.instance = await self.store.agent_instances.update(instance)
                if self.fence is not None:  # last: the lease row is locked for the shortest time
                    await self.fence(False)

        await retried(write)


def _tool_calls_over(allowed: int, answer: AgentReply) -> str | None:
    """An agent that reports more tool calls than its ``max_tool_calls`` failed the attempt
    (the engine's check, whatever the agent does to keep within it)."""
    used = (answer.token_usage or {}).get("tool_calls", 0)
    if isinstance(used, int) and used > allowed:
        return f"made {used} tool calls, more than max_tool_calls {allowed}"
    return None


async def settle(
    tasks: Sequence[Awaitable[T]],
) -> list[T]:
    """Await every one of ``tasks`` (none is left running to write after the run ends);
    then raise the first failure, else the first pause, else return the results in order."""
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, HumanInputNeeded):
            raise outcome
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if not isinstance(o, BaseException)]


__all__ = [
    "CALLS",
    "AgentFailed",
    "ChildPaused",
    "HumanInputNeeded",
    "LimitExceeded",
    "Member",
    "Run",
    "TopologyFailed",
    "settle",
]
