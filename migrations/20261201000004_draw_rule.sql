-- The draw rule each event follows (docs/fairness.md). Events created before rule v2
-- drew under v1; a build that knows only v2 refuses to draw or verify them rather
-- than judge them by the wrong rule.
alter table events add column draw_rule text not null default 'dropgate/draw/v1';
alter table events alter column draw_rule set default 'dropgate/draw/v2';
