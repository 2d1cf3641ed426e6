-- Units ranked by their share of regular users this month, with the change from last
-- month and the unit mailboxes nobody attended. Unit mailboxes are not people: they are
-- left out of headcount and shares. Inputs: person_month (this month), person_month_prev
-- (the month before; may be empty). Parameter: $min_nights_collected (a unit mailbox is
-- "unattended" only when collected, with its reading counted, on that many nights).
with

people as (
    select * from person_month where not is_unit_mailbox
),

units as (
    select
        unit_code,
        min(unit_name) as unit_name,
        count(*) as headcount,
        count(*) filter (where has_mailbox) as mailboxes,
        count(*) filter (where usage_class = 'regular') as regular,
        count(*) filter (where usage_class = 'occasional') as occasional,
        count(*) filter (where usage_class = 'inactive') as inactive,
        count(*) filter (where usage_class = 'no_mailbox') as no_mailbox,
        count(*) filter (where usage_class = 'not_collected') as not_collected,
        -- the shares are of the mailboxes that could be rated: collected at least one night
        count(*) filter (where usage_class in ('regular', 'occasional', 'inactive')) as rated,
        -- rated below "regular" on a month a signal could not be measured: a lower bound
        count(*) filter (
            where usage_class in ('occasional', 'inactive') and unmeasured is not null
        ) as not_measured
    from people
    group by unit_code
),

previous as (
    select
        unit_code,
        -- no collection in the unit that month: unknown, not 0%
        case when sum(nights_collected) > 0 then
            count(*) filter (where usage_class = 'regular')
                / nullif(count(*) filter (where usage_class in ('regular', 'occasional', 'inactive')), 0)
        end as share_regular_prev
    from person_month_prev
    where not is_unit_mailbox
    group by unit_code
),

unit_mailboxes as (
    select
        unit_code,
        count(*) as unit_mailboxes,
        count(*) filter (
            where nights_collected >= $min_nights_collected and read_nights >= $min_nights_collected
                and coalesce(read_activity, 0) = 0 and sent = 0
        ) as unit_mailboxes_unattended
    from person_month
    where is_unit_mailbox
    group by unit_code
),

shares as (
    select
        u.*,
        round(regular / nullif(rated, 0), 4) as share_regular,
        round(occasional / nullif(rated, 0), 4) as share_occasional,
        round(inactive / nullif(rated, 0), 4) as share_inactive,
        round(p.share_regular_prev, 4) as share_regular_prev,
        coalesce(m.unit_mailboxes, 0) as unit_mailboxes,
        coalesce(m.unit_mailboxes_unattended, 0) as unit_mailboxes_unattended
    from units u
    left join previous p using (unit_code)
    left join unit_mailboxes m using (unit_code)
),

final as (
    select
        rank() over (order by share_regular desc nulls last) as rank,
        unit_code,
        unit_name,
        headcount,
        mailboxes,
        regular,
        occasional,
        inactive,
        no_mailbox,
        not_collected,
        not_measured,
        share_regular,
        share_occasional,
        share_inactive,
        share_regular_prev,
        round(share_regular - share_regular_prev, 4) as share_regular_change,
        unit_mailboxes,
        unit_mailboxes_unattended
    from shares
)

select * from final
order by rank, unit_code
