"""Jobs: live progress, cancel, error text; start pseudo-labelling; the worker's state."""
import streamlit as st

from engine import jobs
from engine.worker import ensure_worker, worker_running
from store import jobs as store_jobs
from ui.common import workspace

ws = workspace()
st.title("Jobs")

c = st.columns([2, 2, 3])
pid = worker_running(ws)
c[0].markdown(f"**Worker:** {f'running (pid {pid})' if pid else 'not running'}")
if not pid and c[1].button("Start worker"):
    ensure_worker(ws)
    st.rerun()
if c[2].button("Pseudo-label unlabelled real images",
               help="Queue a job: the teacher labels real images that have no persons yet "
                    "(stored as machine labels)."):
    from engine.errors import RealcalError
    from engine.pseudo_label import resolve_params

    try:
        job_id = jobs.submit(ws, "pseudo_label", resolve_params(ws))
        ensure_worker(ws)
        st.toast(f"Queued job {job_id}")
    except RealcalError as exc:
        st.error(str(exc))


def cancel(job_id: int) -> None:
    with ws.connect() as db:
        store_jobs.request_cancel(db, job_id)


@st.fragment(run_every=2)
def job_list() -> None:
    with ws.connect() as db:
        rows = store_jobs.list_jobs(db, limit=30)
    if not rows:
        st.info("No jobs yet.")
        return
    for r in rows:
        with st.container(border=True):
            top = st.columns([4, 2, 1])
            title = KINDS[r["kind"]].title if r["kind"] in KINDS else r["kind"]
            top[0].markdown(f"**#{r['id']} {title}**  \n`{r['status']}` · created {r['created_at'][:19]}")
            if r["status"] in ("queued", "running"):
                label = "Stopping…" if r["cancel_requested"] else "Cancel"
                top[2].button(label, key=f"cancel-{r['id']}", on_click=cancel, args=(r["id"],),
                              disabled=bool(r["cancel_requested"]))
            if r["total"]:
                st.progress(min(1.0, r["progress"] / r["total"]), text=r["message"] or "")
            elif r["message"]:
                st.caption(r["message"])
            if r["error"]:
                first, _, rest = r["error"].partition("\n")
                st.error(first)
                if rest.strip():
                    with st.expander("Details"):
                        st.code(rest.strip())


KINDS = jobs.kinds()
job_list()
