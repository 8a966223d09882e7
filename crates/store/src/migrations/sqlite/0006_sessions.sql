-- What a task has used and touched while it runs.
--
-- task_usage: one row per task with a call budget, created by the first call
-- that counts against it; calls_used never passes max_calls (the increment is
-- conditional), so concurrent calls on any number of nodes cannot overspend.
CREATE TABLE task_usage (
    task_id    TEXT    PRIMARY KEY,
    max_calls  INTEGER NOT NULL CHECK (max_calls >= 1),
    calls_used INTEGER NOT NULL DEFAULT 0 CHECK (calls_used >= 0 AND calls_used <= max_calls)
);

-- session_labels: every data label a delegation tree (keyed by its root task)
-- has touched. Labels are only ever added.
CREATE TABLE session_labels (
    root_task_id TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    added_us     INTEGER NOT NULL,
    PRIMARY KEY (root_task_id, label)
);
