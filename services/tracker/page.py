"""The center's supervision page: server-rendered HTML on the tracker, in Vietnamese (``?lang=en``).

Center staff see the dossiers by status and agency, the overdue ones and the ones whose apology slip is
due (with the working days left), those waiting on the citizen (a fee to pay) for longer than the
threshold though their clock is paused, one dossier's timeline and legs, the on-time ratio per agency and
procedure, and the stuck (dead-lettered) handoffs with a **replay** button. Replay calls the same code
as ``lienthong dlq replay`` (:mod:`services.runtime.failures.dead_letter_replay`): it reads the dead
letters, selects those of that dossier (the record key is the dossier id) and that agency, and replays
them; ``replay`` records every replay on the ``dlq.replays`` topic, and the page records who replayed
and why (the reason the form asks for) as an operator action
(:mod:`services.runtime.failures.operator_actions`), which the tracker appends to its handoff log.

Staff sign in (:mod:`services.runtime.auth.signin`): the page needs the ``viewer`` role, the replay
button is shown to and accepted from operators only, and its form carries the session's CSRF token.
With sign-in off (development) the page says so on every view, and a replay is recorded as anonymous.

Personal data: the tracker stores only the applicant's citizen id masked to its last digits, and the
page shows nothing else about the citizen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from schemas.agencies import Agency
from schemas.catalog import Catalog
from schemas.events import OperatorActionKind, OperatorVia
from schemas.workdays import WorkingCalendar
from services.runtime.auth.signin import CSRF_FIELD, StaffAccess
from services.runtime.auth.staff import Role, Staff
from services.runtime.failures import dead_letter_replay, operator_actions
from services.runtime.trust import signing
from services.tracker.store import TrackerStore
from services.tracker.views import DEFAULT_WAITING_ALERT, Clock, DossierSummary, TrackerViews, utc_now

PAGE: Final = "/giam-sat"
TEMPLATES: Final = Path(__file__).parent / "templates"
STATIC: Final = Path(__file__).parent / "static"
LANGS: Final = ("vi", "en")
LIST_LIMIT: Final = 200
ANONYMOUS: Final = "anonymous (staff sign-in off)"  # who replayed, when nobody signs in
MAX_REASON: Final = 500

# One entry per label: (Vietnamese, English).
LABELS: Final[dict[str, tuple[str, str]]] = {
    "title": ("Giám sát hồ sơ liên thông", "Cross-agency dossier supervision"),
    "as_of": ("Cập nhật lúc", "As of"),
    "other_lang": ("English", "Tiếng Việt"),
    "totals": ("Tổng quan", "Overview"),
    "dossiers": ("Hồ sơ", "Dossiers"),
    "in_progress": ("Đang xử lý", "In progress"),
    "closed": ("Đã kết thúc", "Closed"),
    "on_time_ratio": ("Tỷ lệ đúng hạn", "On-time ratio"),
    "overdue": ("Trễ hạn", "Overdue"),
    "apology_due": ("Cần phiếu xin lỗi", "Apology slip due"),
    "paused": ("Tạm dừng (chờ công dân)", "Paused (waiting on citizen)"),
    "stuck": ("Bị kẹt", "Stuck"),
    "by_status": ("Theo trạng thái", "By status"),
    "by_agency": ("Theo cơ quan", "By agency"),
    "by_procedure": ("Theo thủ tục", "By procedure"),
    "agency": ("Cơ quan", "Agency"),
    "procedure": ("Thủ tục", "Procedure"),
    "status": ("Trạng thái", "Status"),
    "count": ("Số lượng", "Count"),
    "open": ("Đang mở", "Open"),
    "waiting_on_citizen": ("Chờ công dân", "Waiting on citizen"),
    "completed": ("Hoàn thành", "Completed"),
    "rejected": ("Từ chối", "Rejected"),
    "completed_late": ("Hoàn thành trễ", "Completed late"),
    "stuck_handoffs": ("Chuyển giao bị kẹt (thư chết)", "Stuck handoffs (dead-lettered)"),
    "overdue_list": ("Hồ sơ trễ hạn", "Overdue dossiers"),
    "apology_list": ("Hồ sơ cần phiếu xin lỗi và hẹn lại", "Dossiers needing the apology slip"),
    "waiting_list": (
        "Hồ sơ chờ công dân quá lâu (đồng hồ tạm dừng)",
        "Dossiers waiting on the citizen too long (clock paused)",
    ),
    "waiting_too_long": ("Chờ công dân quá lâu", "Waiting on citizen too long"),
    "all_dossiers": ("Danh sách hồ sơ", "Dossiers"),
    "dossier_code": ("Mã hồ sơ", "Dossier code"),
    "holder": ("Đang giữ", "Held by"),
    "desk": ("Bộ phận một cửa", "One-stop desk"),
    "applicant": ("Người nộp (CCCD)", "Applicant (citizen id)"),
    "received_at": ("Tiếp nhận", "Received"),
    "due_on": ("Hạn trả", "Due on"),
    "remaining": ("Còn lại (ngày làm việc)", "Left (working days)"),
    "reason": ("Lý do", "Reason"),
    "error_class": ("Loại lỗi", "Error class"),
    "action": ("Thao tác", "Action"),
    "replay": ("Xử lý lại", "Replay"),
    "replaying": ("Đang xử lý lại…", "Replaying…"),
    "none": ("Không có", "None"),
    "filter": ("Lọc", "Filter"),
    "all": ("Tất cả", "All"),
    "back": ("← Về trang giám sát", "← Back to supervision"),
    "timeline": ("Diễn biến", "Timeline"),
    "legs": ("Các bước liên thông", "Agency legs"),
    "step": ("Bước", "Step"),
    "state": ("Tình trạng", "State"),
    "requested_at": ("Yêu cầu lúc", "Requested"),
    "due_at": ("Hạn bước", "Leg due"),
    "settled_at": ("Xong lúc", "Settled"),
    "reference": ("Số tham chiếu", "Reference"),
    "time": ("Thời gian", "Time"),
    "event": ("Sự kiện", "Event"),
    "producer": ("Nguồn", "Producer"),
    "summary": ("Nội dung", "Summary"),
    "result": ("Kết quả", "Result"),
    "apology_day": ("Ngày phát hành phiếu xin lỗi", "Apology slip day"),
    "channel": ("Kênh", "Channel"),
    "yes": ("Có", "Yes"),
    "no": ("Không", "No"),
    "auto_refresh": ("Tự làm mới", "Auto refresh"),
    "flash_replayed": (
        "Đã xử lý lại {n} chuyển giao bị kẹt; việc xử lý lại đã được ghi nhận.",
        "Replayed {n} stuck handoff(s); the replay is recorded.",
    ),
    "flash_skipped": (
        "{n} chuyển giao đã được xử lý lại trước đó (bỏ qua).",
        "{n} handoff(s) had been replayed before (skipped).",
    ),
    "flash_none": (
        "Không tìm thấy thư chết nào của hồ sơ này tại cơ quan {agency}.",
        "No dead letter of this dossier was found for agency {agency}.",
    ),
    "flash_error": ("Không thể xử lý lại: {error}", "Could not replay: {error}"),
    "not_found": ("Không có hồ sơ này", "No such dossier"),
    "sign_in_off": (
        "Đăng nhập đang tắt: ai truy cập được trang này đều có thể xem và xử lý lại"
        " (chỉ dùng khi phát triển).",
        "Sign-in is off: anyone who reaches this page may read it and replay (development only).",
    ),
    "signed_in_as": ("Đăng nhập:", "Signed in as"),
    "sign_out": ("Đăng xuất", "Sign out"),
    "replay_reason": ("Lý do xử lý lại", "Reason for the replay"),
    "flash_unrecorded": (
        "Chưa xử lý lại: không ghi nhận được thao tác vào nhật ký: {error}",
        "Not replayed: the action could not be recorded in the log: {error}",
    ),
    "reason_needed": (
        "Cần nhập lý do xử lý lại (1 đến 500 ký tự).",
        "A replay needs a reason (1 to 500 characters).",
    ),
}
STATE_LABELS: Final[dict[str, tuple[str, str]]] = {
    "requested": ("Đã yêu cầu", "Requested"),
    "waiting_on_citizen": ("Chờ công dân", "Waiting on citizen"),
    "completed": ("Hoàn thành", "Completed"),
    "rejected": ("Từ chối", "Rejected"),
    "dead_lettered": ("Bị kẹt", "Stuck"),
}
RESULT_LABELS: Final[dict[str, tuple[str, str]]] = {
    "completed": ("Hoàn thành", "Completed"),
    "returned": ("Trả hồ sơ", "Returned"),
    "withdrawn": ("Rút hồ sơ", "Withdrawn"),
    "refused": ("Không tiếp nhận", "Refused"),
}
AGENCY_LABELS: Final[dict[str, tuple[str, str]]] = {
    "land": ("Văn phòng đăng ký đất đai", "Land registration office"),
    "tax": ("Cơ quan thuế", "Tax authority"),
    "civil_status": ("Hộ tịch", "Civil-status registry"),
    "residence": ("Công an (cư trú)", "Police (residence)"),
    "social_insurance": ("Bảo hiểm xã hội", "Social insurance"),
    "business_registry": ("Đăng ký kinh doanh", "Business registration"),
}

# Replays the selected dead letters; the default calls services.runtime.failures.dead_letter_replay
# (tests may swap it).
Replayer = Callable[
    [str, Sequence[dead_letter_replay.DeadLetter]], Awaitable[dead_letter_replay.ReplayReport]
]
# Records who replayed what and why; the default publishes the operator action (tests may swap it).
Recorder = Callable[[operator_actions.OperatorAction], Awaitable[object]]


def _lang(value: str | None) -> str:
    return value if value in LANGS else "vi"


def _pick(table: dict[str, tuple[str, str]], key: str, lang: str) -> str:
    pair = table.get(key)
    if pair is None:
        return key
    return pair[LANGS.index(lang)]


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True
    )
    env.filters["when"] = _when
    env.filters["ratio"] = _ratio
    return env


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    from schemas.workdays import default_calendar

    return default_calendar().local(value).strftime("%d/%m/%Y %H:%M")


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def build_page(
    store: TrackerStore,
    catalog: Catalog,
    *,
    bootstrap_servers: str,
    topic_prefix: str = "",
    now: Clock = utc_now,
    calendar: WorkingCalendar | None = None,
    replayer: Replayer | None = None,
    kafka_options: dict[str, Any] | None = None,
    waiting_alert: timedelta = DEFAULT_WAITING_ALERT,
    access: StaffAccess | None = None,
    recorder: Recorder | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> APIRouter:
    """The page's routes: ``/`` (redirects), ``/giam-sat``, one dossier, and its replay action.

    ``access``: who may see and replay (sign-in off when None); ``clock``: when an action happened (the
    views have their own clock, ``now``, which tests set to the dossiers' dates)."""
    views = TrackerViews(store.conn, catalog, calendar=calendar, now=now, waiting_alert=waiting_alert)
    env = _environment()
    options = dict(kafka_options or {})
    access = access or StaffAccess(None)
    viewer = access.page(Role.VIEWER)
    operator = access.page(Role.OPERATOR)

    async def replay_as(
        who: str, dossier: str, letters: Sequence[dead_letter_replay.DeadLetter]
    ) -> dead_letter_replay.ReplayReport:
        if replayer is not None:
            return await replayer(dossier, letters)
        # Signed with the tracker's key (a replayer: services.runtime.trust.header_signing).
        return await dead_letter_replay.replay(
            bootstrap_servers, letters, prefix=topic_prefix, operator=who,
            signer=signing.process_signer(), **options,
        )  # fmt: skip

    async def default_recorder(action: operator_actions.OperatorAction) -> object:
        return await operator_actions.record_action(
            bootstrap_servers, action, prefix=topic_prefix, signer=signing.process_signer(),
            producer="tracker", **options,
        )  # fmt: skip

    record = recorder or default_recorder
    page = APIRouter(tags=["supervision page"], include_in_schema=False)

    def render(
        template: str, lang: str, request: Request, staff: Staff | None, **context: Any
    ) -> HTMLResponse:
        def t(key: str, **values: Any) -> str:
            return _pick(LABELS, key, lang).format(**values)

        def link(path: str, **query: Any) -> str:
            params = {k: v for k, v in query.items() if v is not None}
            if lang != "vi":
                params["lang"] = lang
            return path + ("?" + urlencode(params) if params else "")

        html = env.get_template(template).render(
            lang=lang,
            other_lang="en" if lang == "vi" else "vi",
            t=t,
            link=link,
            state=lambda s: _pick(STATE_LABELS, s, lang),
            result=lambda r: _pick(RESULT_LABELS, r, lang) if r else "—",
            agency_name=lambda a: _pick(AGENCY_LABELS, a, lang) if a else t("desk"),
            status_name=lambda s: (s.vi if lang == "vi" else s.en) if s is not None else "—",
            procedure_name=lambda p: _procedure_name(p, lang),
            page=PAGE,
            as_of=views.now(),
            sign_in_off=not access.enabled,
            staff=staff,
            may_replay=not access.enabled or (staff is not None and staff.may(Role.OPERATOR)),
            csrf_field=CSRF_FIELD,
            csrf_token=access.csrf_token(request),
            max_reason=MAX_REASON,
            **context,
        )
        return HTMLResponse(html)

    @page.get("/", dependencies=[Depends(viewer)])
    async def root(lang: str | None = None) -> RedirectResponse:
        return RedirectResponse(PAGE + ("?lang=en" if lang == "en" else ""), status_code=307)

    @page.get(PAGE, response_class=HTMLResponse)
    async def overview(
        request: Request,
        lang: str | None = None,
        status: Annotated[int | None, Query(ge=1, le=10)] = None,
        agency: Agency | None = None,
        # A dependency of this build: Annotated[...] is resolved in the module's globals, where it is not.
        staff: Staff | None = Depends(viewer),  # noqa: B008
    ) -> HTMLResponse:
        """The supervision overview: totals, lists of dossiers needing attention, statistics."""
        language = _lang(lang)
        stats = views.stats()
        stuck = views.dossiers(stuck=True, limit=LIST_LIMIT).items
        stuck_rows = []
        for summary in stuck:
            detail = views.dossier(summary.dossier_id)
            if detail is None:
                continue
            stuck_rows += [(summary, leg) for leg in detail.legs if leg.stuck]
        open_ones = views.dossiers(limit=LIST_LIMIT * 5).items
        overdue = [d for d in open_ones if d.overdue and not d.closed]
        apology = [d for d in open_ones if d.apology_due and not d.closed]
        waiting = views.dossiers(waiting_too_long=True, limit=LIST_LIMIT).items
        listed = views.dossiers(status=status, agency=agency.value if agency else None, limit=LIST_LIMIT)
        return render(
            "overview.html",
            language,
            request,
            staff,
            stats=stats,
            stuck_rows=stuck_rows,
            overdue=overdue,
            apology=apology,
            waiting=waiting,
            listed=listed,
            selected_status=status,
            selected_agency=agency.value if agency else None,
            agencies=[a.value for a in Agency],
        )

    @page.get(PAGE + "/ho-so/{dossier}", response_class=HTMLResponse)
    async def dossier_page(
        request: Request,
        dossier: str,
        lang: str | None = None,
        replayed: int | None = None,
        skipped: int | None = None,
        missing: str | None = None,
        error: str | None = None,
        unrecorded: str | None = None,
        staff: Staff | None = Depends(viewer),  # noqa: B008
    ) -> HTMLResponse:
        """One dossier: status, deadline, legs (with replay for the stuck ones) and timeline."""
        language = _lang(lang)
        detail = views.dossier(dossier)
        if detail is None:
            raise HTTPException(status_code=404, detail=_pick(LABELS, "not_found", language))
        flashes: list[tuple[str, str]] = []
        if replayed is not None:
            flashes.append(("ok", _pick(LABELS, "flash_replayed", language).format(n=replayed)))
        if skipped:
            flashes.append(("warn", _pick(LABELS, "flash_skipped", language).format(n=skipped)))
        if missing is not None:
            flashes.append(("warn", _pick(LABELS, "flash_none", language).format(agency=missing)))
        if error is not None:
            flashes.append(("error", _pick(LABELS, "flash_error", language).format(error=error)))
        if unrecorded is not None:
            flashes.append(("error", _pick(LABELS, "flash_unrecorded", language).format(error=unrecorded)))
        return render("dossier.html", language, request, staff, d=detail, flashes=flashes)

    async def same_origin(request: Request) -> None:
        access.check_same_origin(request)  # before anything else: a cross-site POST learns nothing

    @page.post(PAGE + "/ho-so/{dossier}/replay/{agency}", dependencies=[Depends(same_origin)])
    async def replay_handoff(
        request: Request,
        dossier: str,
        agency: Agency,
        lang: str | None = None,
        staff: Staff | None = Depends(operator),  # noqa: B008
    ) -> RedirectResponse:
        """Records who replays and why, then replays the dead letters of this dossier's handoff to
        ``agency`` (as ``lienthong dlq replay`` does), then shows the dossier with a flash message
        saying what happened. Needs the operator role, the session's CSRF token and a reason."""
        language = _lang(lang)
        form = await request.form()
        access.check_form(request, form)
        reason = form.get("reason")
        reason = reason.strip() if isinstance(reason, str) else ""
        if not reason or len(reason) > MAX_REASON:
            raise HTTPException(status_code=400, detail=_pick(LABELS, "reason_needed", language))
        detail = views.dossier(dossier)
        if detail is None:
            raise HTTPException(status_code=404, detail=_pick(LABELS, "not_found", language))
        who = staff.subject if staff is not None else ANONYMOUS
        query: dict[str, Any] = {}
        if language != "vi":
            query["lang"] = language
        try:
            letters = await dead_letter_replay.read_dead_letters(bootstrap_servers, topic_prefix, **options)
            key = detail.dossier_id.encode()
            chosen = [x for x in dead_letter_replay.select(letters, agency=agency.value) if x.key == key]
            if chosen:
                # Recorded first: a replay that cannot be put in the log does not happen (nothing done
                # unseen); an action whose replay then fails stays in the log, with the error shown.
                action = operator_actions.OperatorAction(
                    action=OperatorActionKind.REPLAY, subject=who, reason=reason,
                    via=OperatorVia.SUPERVISION_PAGE,
                    dossier_id=detail.dossier_id, targets=[x.id for x in chosen], at=clock(),
                )  # fmt: skip
                try:
                    await record(action)
                except Exception as failure:
                    query["unrecorded"] = f"{type(failure).__name__}: {failure}"[:300]
                else:
                    report = await replay_as(who, detail.dossier_id, chosen)
                    query |= {"replayed": len(report.replayed), "skipped": len(report.skipped)}
            else:
                query["missing"] = agency.value
        except Exception as failure:  # the operator sees why, the page stays up
            query["error"] = f"{type(failure).__name__}: {failure}"[:300]
        target = f"{PAGE}/ho-so/{detail.dossier_id}?{urlencode(query)}"
        return RedirectResponse(target, status_code=303)

    return page


def _procedure_name(summary: DossierSummary | Any, lang: str) -> str:
    procedure = getattr(summary, "procedure", None)
    if procedure is None:
        return "—"
    name = procedure.name_vi if lang == "vi" else procedure.name_en
    return f"{procedure.code} — {name}" if name else str(procedure.code)
