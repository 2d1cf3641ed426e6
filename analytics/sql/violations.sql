-- Violations of one month, one row per piece of evidence, each with its confidence:
--   PUBLIC_MAIL_FOR_WORK        confirmed: official mail exchanged with a staff member's own
--                               roster-declared personal public address (charged to that
--                               member), or a forwarding rule to a public address;
--                               suspected: a public address writing with many official
--                               mailboxes across units (review only).
--   OFFICIAL_ADDRESS_REGISTERED mail from social-network / e-banking senders received.
--   PUBLIC_CONTACT_IN_DOCUMENT  a sent document giving a public address (contact scan).
--   NOT_USING_OFFICIAL_MAIL     inactive all month under a mandatory-use policy, not exempt;
--                               confirmed only when reading was counted on enough nights and
--                               a login source covers the mailbox, else suspected (review)
--                               with the signal that was missing as its rule.
--   UNIT_MAILBOX_UNATTENDED     a unit mailbox nobody read from or sent from; suspected when
--                               its server could not count reading on enough nights.
-- seen_night: for a forwarding rule, the first collection night of the month it was seen on
-- (null for message evidence, whose date is evidence_date).
-- The mail log (issue 25), for people whose source submits through the logged MTA
-- (roster.submissions_measured): a recipient a roster official's submission reached
-- (status sent; not a hop to a content filter) is evidence like a Sent-folder message —
-- at a declared personal address (confirmed), or at a public address that many mailboxes
-- across units wrote to (suspected); an inbound delivery from a registration sender to an
-- official address is registration evidence. Bounced, expired and deferred recipients
-- are not evidence: the mail did not go. Each such row carries queue_id and the log's time;
-- the same message found in a folder and in the log (same Message-ID, mailbox and
-- counterpart) is one row, evidence_source 'mailbox+mail_log'; else 'mailbox' or
-- 'mail_log' (null for month-long findings).
-- Inputs: roster, person_month, counterpart_addresses, forwarding, contacts,
-- mail_log_deliveries (the last three may be empty); the functions is_public_domain,
-- is_official_domain, is_registration_domain. Parameters: $month_start, $month_end,
-- $first_day, $next_day, $mandatory_use, $min_nights_collected, $suspected_min_mailboxes,
-- $suspected_min_units.
with

people as (
    select employee_id, email as mailbox, unit_code, personal_emails, submissions_measured
    from roster
    where email <> ''
),

-- recipients the log saw mail reach this month (a content filter's hop is not a delivery)
log_reached as (
    select
        queue_id, time, message_id, direction, lower(sasl_username) as sasl_username,
        recipient, recipient_domain, sender, sender_domain
    from mail_log_deliveries
    where time >= $month_start and time < $month_end
        and status = 'sent' and handed_to is null
),

-- submissions of roster officials whose source the log covers, one row per recipient
log_submitted as (
    select p.employee_id, p.mailbox, p.unit_code, l.*
    from log_reached l
    join people p on p.mailbox = l.sasl_username
    where l.direction = 'out' and p.submissions_measured
),

log_domains as (
    select distinct recipient_domain as domain from log_submitted
    where recipient_domain is not null
    union
    select distinct sender_domain from log_reached
    where direction = 'in' and sender_domain is not null
),

-- classed as counterpart_addresses.sql does: official wins, a registration sender is never
-- "public"
log_domain_classes as (
    select
        domain,
        case
            when is_official_domain(domain) then 'official'
            when is_registration_domain(domain) then 'other'
            when is_public_domain(domain) then 'public'
            else 'other'
        end as domain_class,
        is_registration_domain(domain) as registration_sender
    from log_domains
),

log_public as (
    select s.*
    from log_submitted s
    join log_domain_classes c on c.domain = s.recipient_domain
    where c.domain_class = 'public'
),

declared_addresses as (
    select employee_id, unnest(personal_emails) as address
    from roster
),

declared as (
    select
        d.employee_id, c.mailbox, 'PUBLIC_MAIL_FOR_WORK' as code, 'confirmed' as confidence,
        'declared_personal_address' as rule, c.folder, c.uid, c.message_id,
        c.sent_date as evidence_date, c.address as counterpart
    from counterpart_addresses c
    join declared_addresses d on d.address = lower(c.address)
    where c.domain_class = 'public'
),

log_declared as (
    select
        d.employee_id, s.mailbox, 'PUBLIC_MAIL_FOR_WORK' as code, 'confirmed' as confidence,
        'declared_personal_address' as rule, s.message_id, s.time as evidence_date,
        s.recipient as counterpart, s.queue_id
    from log_public s
    join declared_addresses d on d.address = s.recipient
),

forwarding_targets as (
    select
        lower(f.mailbox) as mailbox,
        lower(f.target) as target,
        min(cast(f.night as date)) as seen_night
    from forwarding f
    -- a rule seen on a night covering the month (the night N run sees day N-1)
    where cast(f.night as date) - 1 >= $first_day and cast(f.night as date) - 1 < $next_day
    group by all
),

forwards as (
    select
        p.employee_id, f.mailbox, 'PUBLIC_MAIL_FOR_WORK', 'confirmed', 'forwarding_rule',
        null, null, null, null, f.target, null, 'mailbox'
    from forwarding_targets f
    join people p on p.mailbox = f.mailbox
    -- contract.domains' rule, as the function the loader registers
    where is_public_domain(split_part(f.target, '@', 2))
),

public_pairs as (
    select c.address, c.mailbox, p.unit_code
    from counterpart_addresses c
    join people p on p.mailbox = c.mailbox
    where c.domain_class = 'public'
        and lower(c.address) not in (select address from declared_addresses)
    union all
    select recipient, mailbox, unit_code
    from log_public
    where recipient not in (select address from declared_addresses)
),

suspicious as (
    select address
    from public_pairs
    group by address
    having count(distinct mailbox) >= $suspected_min_mailboxes
        and count(distinct unit_code) >= $suspected_min_units
),

suspected as (
    select
        p.employee_id, c.mailbox, 'PUBLIC_MAIL_FOR_WORK', 'suspected',
        'public_address_across_units', c.folder, c.uid, c.message_id, c.sent_date, c.address
    from counterpart_addresses c
    join suspicious s on s.address = c.address
    join people p on p.mailbox = c.mailbox
),

log_suspected as (
    select
        l.employee_id, l.mailbox, 'PUBLIC_MAIL_FOR_WORK', 'suspected',
        'public_address_across_units', l.message_id, l.time, l.recipient, l.queue_id
    from log_public l
    join suspicious s on s.address = l.recipient
),

registered as (
    select
        p.employee_id, c.mailbox, 'OFFICIAL_ADDRESS_REGISTERED', 'confirmed',
        'registration_sender', c.folder, c.uid, c.message_id, c.sent_date, c.address
    from counterpart_addresses c
    join people p on p.mailbox = c.mailbox
    where c.role <> 'sent' and c.registration_sender
),

log_registered as (
    select
        p.employee_id, p.mailbox, 'OFFICIAL_ADDRESS_REGISTERED', 'confirmed',
        'registration_sender', l.message_id, l.time, l.sender, l.queue_id
    from log_reached l
    join people p on p.mailbox = l.recipient
    join log_domain_classes c on c.domain = l.sender_domain
    where l.direction = 'in' and p.submissions_measured and c.registration_sender
),

-- message evidence from the mailboxes' folders and from the log; a registration is one
-- message whatever its envelope sender, other evidence one message and counterpart
folder_messages as (
    select
        *,
        case when code = 'OFFICIAL_ADDRESS_REGISTERED' then '' else lower(counterpart) end
            as match_key
    from (
        select * from declared
        union all select * from suspected
        union all select * from registered
    )
),

log_messages as (
    select
        *,
        case when code = 'OFFICIAL_ADDRESS_REGISTERED' then '' else lower(counterpart) end
            as match_key
    from (
        select * from log_declared
        union all select * from log_suspected
        union all select * from log_registered
    )
),

messages_found as (
    select
        coalesce(f.employee_id, l.employee_id) as employee_id,
        coalesce(f.mailbox, l.mailbox) as mailbox,
        coalesce(f.code, l.code) as code,
        coalesce(f.confidence, l.confidence) as confidence,
        coalesce(f.rule, l.rule) as rule,
        f.folder,
        f.uid,
        coalesce(f.message_id, l.message_id) as message_id,
        coalesce(f.evidence_date, l.evidence_date) as evidence_date,
        coalesce(f.counterpart, l.counterpart) as counterpart,
        l.queue_id,
        case
            when l.code is null then 'mailbox'
            when f.code is null then 'mail_log'
            else 'mailbox+mail_log'
        end as evidence_source
    from folder_messages f
    full join log_messages l
        on l.employee_id = f.employee_id and l.code = f.code and l.rule = f.rule
        and l.mailbox = f.mailbox and l.message_id = f.message_id
        and l.match_key = f.match_key
),

documents as (
    select
        p.employee_id, lower(t.mailbox), 'PUBLIC_CONTACT_IN_DOCUMENT', 'confirmed',
        'contact_in_' || t.where_found, null, t.uid, t.message_id, t.sent_date, t.address,
        null, 'mailbox'
    from contacts t
    join people p on p.mailbox = lower(t.mailbox)
    where t.sent_date >= $month_start and t.sent_date < $month_end
        and t.address is not null
),

inactive as (
    select
        employee_id, mailbox, 'NOT_USING_OFFICIAL_MAIL',
        case
            when read_nights >= $min_nights_collected and logins_measured then 'confirmed'
            else 'suspected'
        end,
        case
            when read_nights < $min_nights_collected then 'inactive_month_reading_not_measured'
            when not logins_measured then 'inactive_month_logins_not_measured'
            else 'inactive_month'
        end,
        null, null, null, null, null, null, null
    from person_month
    where $mandatory_use and usage_class = 'inactive'
        and nights_collected >= $min_nights_collected
        and exemption is null and not is_unit_mailbox
),

unattended as (
    select
        employee_id, mailbox, 'UNIT_MAILBOX_UNATTENDED',
        case when read_nights >= $min_nights_collected then 'confirmed' else 'suspected' end,
        case
            when read_nights >= $min_nights_collected then 'no_read_no_send'
            else 'no_send_reading_not_measured'
        end,
        null, null, null, null, null, null, null
    from person_month
    where is_unit_mailbox and nights_collected >= $min_nights_collected
        -- reading counted on some nights is evidence of attendance; none counted is unknown
        and coalesce(read_activity, 0) = 0 and sent = 0
),

final as (
    select * from messages_found
    union all select * from forwards
    union all select * from documents
    union all select * from inactive
    union all select * from unattended
)

select
    v.employee_id, v.mailbox, v.code, v.confidence, v.rule, v.folder,
    cast(v.uid as bigint) as uid, v.message_id,
    cast(v.evidence_date as timestamptz) as evidence_date, v.counterpart,
    -- a forwarding rule has no message date: the first night of the month it was seen
    t.seen_night,
    v.queue_id,
    v.evidence_source
from final v
left join forwarding_targets t
    on v.rule = 'forwarding_rule' and t.mailbox = v.mailbox and t.target = v.counterpart
order by
    v.employee_id, v.code, v.confidence, v.evidence_date nulls first, v.mailbox, v.folder, v.uid,
    v.queue_id
