-- Data coverage of one month: per roster mailbox, the nights whose collection of it
-- succeeded, failed or was skipped (from run_mailboxes; the night N run covers day N-1),
-- and the last failure's reason. Inputs: roster, run_mailboxes.
-- Parameters: $first_day, $next_day.
with

outcomes as (
    select
        lower(mailbox) as mailbox,
        cast(night as date) as night,
        status,
        reason,
        run_id
    from run_mailboxes
    where cast(night as date) - 1 >= $first_day and cast(night as date) - 1 < $next_day
        and mailbox not like 'logins:%'
),

-- a night collected twice counts by its last run
last_run as (
    select * from outcomes
    qualify row_number() over (partition by mailbox, night order by run_id desc) = 1
),

final as (
    select
        r.employee_id,
        r.unit_name,
        r.email as mailbox,
        count(l.night) filter (where l.status = 'ok') as nights_ok,
        count(l.night) filter (where l.status = 'failed') as nights_failed,
        count(l.night) filter (where l.status = 'skipped') as nights_skipped,
        arg_max(l.reason, l.night) filter (where l.status = 'failed') as last_failure
    from roster r
    left join last_run l on l.mailbox = r.email
    where r.email <> ''
    group by all
)

select * from final
order by nights_failed desc, employee_id
