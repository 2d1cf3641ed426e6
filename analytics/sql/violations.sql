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
-- Inputs: roster, person_month, counterpart_addresses, forwarding, contacts (the last two
-- may be empty); the function is_public_domain(domain). Parameters: $month_start, $month_end, $first_day, $next_day, $mandatory_use,
-- $suspected_min_mailboxes, $suspected_min_units.
with

people as (
    select employee_id, email as mailbox, unit_code, personal_emails
    from roster
    where email <> ''
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
        null, null, null, null, f.target
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

registered as (
    select
        p.employee_id, c.mailbox, 'OFFICIAL_ADDRESS_REGISTERED', 'confirmed',
        'registration_sender', c.folder, c.uid, c.message_id, c.sent_date, c.address
    from counterpart_addresses c
    join people p on p.mailbox = c.mailbox
    where c.role <> 'sent' and c.registration_sender
),

documents as (
    select
        p.employee_id, lower(t.mailbox), 'PUBLIC_CONTACT_IN_DOCUMENT', 'confirmed',
        'contact_in_' || t.where_found, null, t.uid, t.message_id, t.sent_date, t.address
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
        null, null, null, null, null
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
        null, null, null, null, null
    from person_month
    where is_unit_mailbox and nights_collected >= $min_nights_collected
        -- reading counted on some nights is evidence of attendance; none counted is unknown
        and coalesce(read_activity, 0) = 0 and sent = 0
),

final as (
    select * from declared
    union all select * from forwards
    union all select * from suspected
    union all select * from registered
    union all select * from documents
    union all select * from inactive
    union all select * from unattended
)

select
    v.employee_id, v.mailbox, v.code, v.confidence, v.rule, v.folder,
    cast(v.uid as bigint) as uid, v.message_id,
    cast(v.evidence_date as timestamptz) as evidence_date, v.counterpart,
    -- a forwarding rule has no message date: the first night of the month it was seen
    t.seen_night
from final v
left join forwarding_targets t
    on v.rule = 'forwarding_rule' and t.mailbox = v.mailbox and t.target = v.counterpart
order by
    v.employee_id, v.code, v.confidence, v.evidence_date nulls first, v.mailbox, v.folder, v.uid
