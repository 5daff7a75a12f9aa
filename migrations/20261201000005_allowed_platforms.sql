-- The platforms whose users may enter an event; null lets every platform in. Set at
-- creation and never changed: who may enter is part of what the drop promised.
-- platform_scope was never read by anything and goes.
alter table events drop column platform_scope;
alter table events add column allowed_platforms text[];
alter table events add constraint events_allowed_platforms_check
    check (allowed_platforms is null
           or (cardinality(allowed_platforms) between 1 and 64
               and array_position(allowed_platforms, null) is null));
