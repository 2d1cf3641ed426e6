-- Usage of every roster person in one month: one row per roster row.
-- Inputs: roster, messages, mailbox_status, logins (may be empty: then last_login is null,
-- "unknown", never "no login"), mail_log_deliveries and mail_log_nights (may be empty).
-- Parameters: $month_start / $month_end (timestamptz bounds),
-- $first_day / $next_day (local dates), $tz, $regular_days, $occasional_days.
-- An active day is a local day with a sent message (in the Sent folder, or a submission in
-- the mail log), read activity (flags changed: the night N collection covers day N-1) or a
-- login.
-- The mail log (issue 25): for a person whose source submits through the logged MTA
-- (roster.submissions_measured), a day is "logged" when the night covering it has the file
-- of every log source read that month; on logged days `sent` counts the messages they submitted that
-- reached at least one recipient, on the other days the Sent folder (unknown is not zero:
-- a day the log was not read is never counted as none sent). sent_folder keeps the Sent
-- folder's count, sent_submitted and sent_folder_logged the two counts on the logged days
-- (null without the log), submission_days how many days were logged.
-- Unknown is not zero: read activity is null on a night the server could not count it
-- (no CONDSTORE, a folder's first night), and logins are unknown where no login source
-- covers the person's source (roster.logins_measured). read_activity is the sum of what
-- was counted (null if nothing was), read_nights the nights on which every folder counted,
-- and unmeasured names what the usage class could not see at all this month: the class is
-- then a lower bound ("regular" is still certain), and nothing is confirmed on it
-- (violations.sql).
with

window_messages as (
    select mailbox, role, cast(timezone($tz, sent_date) as date) as local_day
    from messages
    where sent_date >= $month_start and sent_date < $month_end
),

sent as (
    select mailbox, count(*) as sent
    from window_messages
    where role = 'sent'
    group by mailbox
),

received as (
    select mailbox, count(*) as received
    from window_messages
    where role not in ('sent', 'drafts', 'trash', 'junk', 'all')
    group by mailbox
),

-- the log sources read on some night covering the month: each must be read for a day
log_sources as (
    select distinct source
    from mail_log_nights
    where cast(night as date) - 1 >= $first_day and cast(night as date) - 1 < $next_day
),

-- every log source was read on the night covering the day (night N covers day N-1)
logged_days as (
    select cast(night as date) - 1 as local_day
    from mail_log_nights
    where cast(night as date) - 1 >= $first_day and cast(night as date) - 1 < $next_day
    group by 1
    having count(distinct source) = (select count(*) from log_sources)
),

-- one row per message submitted by a roster mailbox in the month (a content filter's
-- re-injection, via_queue_id, is the same message: not counted again)
submitted as (
    select
        r.email as mailbox,
        d.queue_id,
        d.time,
        cast(timezone($tz, d.time) as date) as local_day,
        bool_or(d.status = 'sent') as reached
    from mail_log_deliveries d
    join roster r on lower(d.sasl_username) = r.email
    where r.submissions_measured and r.email <> ''
        and d.direction = 'out' and d.via_queue_id is null
        and d.time >= $month_start and d.time < $month_end
    group by all
),

-- the people the log speaks for, and on how many days of the month
log_people as (
    select email as mailbox, (select count(*) from logged_days) as days
    from roster
    where submissions_measured and email <> ''
),

submission_counts as (
    select s.mailbox, count(*) filter (where s.reached) as sent_submitted
    from submitted s
    join logged_days l on l.local_day = s.local_day
    group by s.mailbox
),

folder_logged as (
    select w.mailbox, count(*) as sent_folder_logged
    from window_messages w
    join logged_days l on l.local_day = w.local_day
    where w.role = 'sent'
    group by w.mailbox
),

nights as (
    select
        mailbox,
        cast(night as date) as night,
        cast(night as date) - 1 as activity_day,
        sum(read_activity) as read_activity,
        -- every folder counted its flag changes: the night saw all reading
        bool_and(read_activity is not null) as read_measured,
        max(quota_used_bytes) as quota_used_bytes,
        max(quota_limit_bytes) as quota_limit_bytes
    from mailbox_status
    where folder_status = 'ok'
    group by mailbox, night
),

window_nights as (
    select *
    from nights
    where activity_day >= $first_day and activity_day < $next_day
),

night_summary as (
    select
        mailbox,
        count(*) as nights_collected,
        -- what was counted is evidence of reading, even on a night a folder could not count
        sum(read_activity) as read_activity,
        count(*) filter (where read_measured) as read_nights,
        arg_max(quota_used_bytes, night) as quota_used_bytes,
        arg_max(quota_limit_bytes, night) as quota_limit_bytes
    from window_nights
    group by mailbox
),

login_days as (
    select lower(mailbox) as mailbox, cast(timezone($tz, login_at) as date) as local_day
    from logins
    where login_at >= $month_start and login_at < $month_end
),

active as (
    select mailbox, local_day from window_messages where role = 'sent'
    union
    -- a submission is use of the mailbox, whether or not its recipients took it
    select mailbox, local_day from submitted
    union
    select mailbox, activity_day from window_nights where read_activity > 0
    union
    select mailbox, local_day from login_days
),

activity as (
    select mailbox, count(*) as active_days, max(local_day) as last_activity
    from active
    group by mailbox
),

last_login as (
    select lower(mailbox) as mailbox, max(login_at) as last_login
    from logins
    where login_at < $month_end
    group by 1
),

joined as (
    select
        r.employee_id,
        r.full_name,
        r.unit_code,
        r.unit_name,
        r.email as mailbox,
        r.is_unit_mailbox,
        r.email <> '' and r.mailbox_issued as has_mailbox,
        case
            when g.days > 0 then
                coalesce(c.sent_submitted, 0) + coalesce(s.sent, 0)
                    - coalesce(f.sent_folder_logged, 0)
            else coalesce(s.sent, 0)
        end as sent,
        coalesce(s.sent, 0) as sent_folder,
        case when g.days > 0 then coalesce(c.sent_submitted, 0)
        end as sent_submitted,
        case when g.days > 0 then coalesce(f.sent_folder_logged, 0)
        end as sent_folder_logged,
        coalesce(g.days, 0) as submission_days,
        coalesce(v.received, 0) as received,
        n.read_activity,
        coalesce(n.read_nights, 0) as read_nights,
        coalesce(a.active_days, 0) as active_days,
        a.last_activity,
        l.last_login,
        coalesce(n.nights_collected, 0) as nights_collected,
        r.logins_measured,
        n.quota_used_bytes,
        n.quota_limit_bytes,
        round(n.quota_used_bytes / nullif(n.quota_limit_bytes, 0), 6) as storage_share,
        r.on_leave,
        r.start_date,
        r.start_date is not null and r.start_date > $first_day
            and r.start_date < $next_day as joined_mid_month
    from roster r
    left join log_people g on g.mailbox = r.email
    left join sent s on s.mailbox = r.email
    left join submission_counts c on c.mailbox = r.email
    left join folder_logged f on f.mailbox = r.email
    left join received v on v.mailbox = r.email
    left join night_summary n on n.mailbox = r.email
    left join activity a on a.mailbox = r.email
    left join last_login l on l.mailbox = r.email
),

final as (
    select
        *,
        case
            when not has_mailbox then 'no_mailbox'
            -- no night of the month collected for this mailbox: nothing to rate it by
            when nights_collected = 0 then 'not_collected'
            when active_days >= $regular_days then 'regular'
            when active_days >= $occasional_days then 'occasional'
            else 'inactive'
        end as usage_class,
        case when has_mailbox and nights_collected > 0 then
            nullif(concat_ws(',',
                case when read_nights = 0 then 'read_activity' end,
                case when not logins_measured then 'logins' end
            ), '')
        end as unmeasured,
        case
            when not has_mailbox then 'no_mailbox'
            when on_leave then 'on_leave'
            when joined_mid_month then 'joined_mid_month'
        end as exemption
    from joined
)

select * from final
order by employee_id
