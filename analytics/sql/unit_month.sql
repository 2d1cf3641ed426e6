-- Every unit of the tree with its own figures and its subtree's (the unit and every unit
-- below it: a district's figures include its offices and communes), ranked among its
-- siblings (the units with the same parent; the roots among themselves) by the subtree's
-- share of regular users, with its head's month. Unit mailboxes are not people. The share
-- is the one rule of contract/usage.py: regular users among the rated people, whose class
-- is one of $rated_classes; with nobody rated it is null (unknown), never 0.
-- Inputs: units (the tree, loaded by Workspace.load_units: unit_code, unit_name,
-- parent_code, kind, head_email, position), person_month, person_month_prev (may be empty).
with recursive

-- (ancestor_code, unit_code) for each unit and every unit at or above it, itself included;
-- the tree has no cycle (contract/units.py refuses one), so this ends
closure as (
    select unit_code as ancestor_code, unit_code from units
    union all
    select c.ancestor_code, u.unit_code
    from closure c
    join units u on u.parent_code = c.unit_code
),

depths as (
    select unit_code, count(*) - 1 as depth from closure group by unit_code
),

people as (
    select
        unit_code,
        has_mailbox,
        usage_class,
        list_contains($rated_classes, usage_class) as rated
    from person_month
    where not is_unit_mailbox
),

own as (
    select
        unit_code,
        count(*) as own_headcount,
        count(*) filter (where rated) as own_rated,
        count(*) filter (where rated and usage_class = 'regular') as own_regular
    from people
    group by unit_code
),

subtree as (
    select
        c.ancestor_code as unit_code,
        count(*) as headcount,
        count(*) filter (where p.has_mailbox) as mailboxes,
        count(*) filter (where p.rated) as rated,
        count(*) filter (where p.rated and p.usage_class = 'regular') as regular,
        count(*) filter (where p.rated and p.usage_class = 'occasional') as occasional,
        count(*) filter (where p.rated and p.usage_class = 'inactive') as inactive,
        count(*) filter (where p.usage_class = 'no_mailbox') as no_mailbox,
        count(*) filter (where p.usage_class = 'not_collected') as not_collected
    from closure c
    join people p on p.unit_code = c.unit_code
    group by c.ancestor_code
),

previous as (
    select
        c.ancestor_code as unit_code,
        count(*) filter (where p.usage_class = 'regular')
            / nullif(count(*) filter (where list_contains($rated_classes, p.usage_class)), 0)
            as share_regular_prev
    from closure c
    join person_month_prev p on p.unit_code = c.unit_code
    where not p.is_unit_mailbox
    group by c.ancestor_code
),

-- the head by the unit's head_email; null when none is given or nobody of the roster has it
heads as (
    select
        u.unit_code,
        p.employee_id as head_employee_id,
        p.full_name as head_name,
        p.usage_class as head_usage_class,
        p.active_days as head_active_days
    from units u
    join person_month p on p.mailbox = u.head_email and not p.is_unit_mailbox
    where u.head_email <> ''
),

figures as (
    select
        u.position,
        u.unit_code,
        u.unit_name,
        u.parent_code,
        u.kind,
        d.depth,
        coalesce(o.own_headcount, 0) as own_headcount,
        coalesce(o.own_rated, 0) as own_rated,
        coalesce(o.own_regular, 0) as own_regular,
        round(o.own_regular / nullif(o.own_rated, 0), 4) as own_share_regular,
        coalesce(s.headcount, 0) as headcount,
        coalesce(s.mailboxes, 0) as mailboxes,
        coalesce(s.rated, 0) as rated,
        coalesce(s.regular, 0) as regular,
        coalesce(s.occasional, 0) as occasional,
        coalesce(s.inactive, 0) as inactive,
        coalesce(s.no_mailbox, 0) as no_mailbox,
        coalesce(s.not_collected, 0) as not_collected,
        round(s.regular / nullif(s.rated, 0), 4) as share_regular,
        round(p.share_regular_prev, 4) as share_regular_prev,
        nullif(u.head_email, '') as head_email,
        h.head_employee_id,
        h.head_name,
        h.head_usage_class,
        h.head_active_days
    from units u
    join depths d using (unit_code)
    left join own o using (unit_code)
    left join subtree s using (unit_code)
    left join previous p using (unit_code)
    left join heads h using (unit_code)
),

final as (
    select
        position,
        unit_code,
        unit_name,
        parent_code,
        kind,
        depth,
        rank() over (
            partition by parent_code order by share_regular desc nulls last
        ) as rank_among_siblings,
        count(*) over (partition by parent_code) as siblings,
        own_headcount,
        own_rated,
        own_regular,
        own_share_regular,
        headcount,
        mailboxes,
        rated,
        regular,
        occasional,
        inactive,
        no_mailbox,
        not_collected,
        share_regular,
        share_regular_prev,
        round(share_regular - share_regular_prev, 4) as share_regular_change,
        head_email,
        head_employee_id,
        head_name,
        head_usage_class,
        head_active_days
    from figures
)

select * from final
order by position
