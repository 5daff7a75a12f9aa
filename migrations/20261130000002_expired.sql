-- Users skipped as abandoned (not seen for the event's abandon timeout when their turn
-- came) are recorded too, so PostgreSQL knows every user's final state.
alter table final_states drop constraint final_states_state_check;
alter table final_states add constraint final_states_state_check
    check (state in ('sold_out', 'closed', 'expired'));
