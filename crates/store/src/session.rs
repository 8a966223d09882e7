//! What a running task has used and touched: its call budget and the data
//! labels of its delegation tree.

/// The outcome of counting one call against a chain of task budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetOutcome {
    /// The call was counted against every budget; `calls_used` is the first
    /// task's count including this call.
    Counted {
        /// Calls counted so far against the first task's budget.
        calls_used: u64,
    },
    /// `task_id`'s budget of `max_calls` is spent; nothing was counted.
    Spent {
        /// The task whose budget is spent.
        task_id: String,
        /// Its budget.
        max_calls: u64,
    },
}
