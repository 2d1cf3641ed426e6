-- One row per (message, counterpart address) in one month, with the address's domain class.
-- The counterpart of a sent message is each To/Cc address; of a received one, its From.
-- Domains are classed by suffix: "hn.vnn.vn" is public through "vnn.vn",
-- "tc.danang.gov.vn" official through "danang.gov.vn"; official wins over public, and a
-- registration sender's domain (social networks, banks) is "other", never "public".
-- Inputs: messages, official_domains(domain), public_domains(domain),
-- registration_domains(domain). Parameters: $month_start, $month_end.
with

window_messages as (
    select mailbox, folder, role, uidvalidity, uid, message_id, sent_date,
           from_addr, to_addrs, cc_addrs
    from messages
    where sent_date >= $month_start and sent_date < $month_end
        and role not in ('drafts', 'trash', 'junk', 'all')
),

addresses as (
    select * exclude (from_addr, to_addrs, cc_addrs),
           unnest(list_concat(to_addrs, cc_addrs)) as address
    from window_messages
    where role = 'sent'
    union all
    select * exclude (from_addr, to_addrs, cc_addrs), from_addr as address
    from window_messages
    where role <> 'sent' and from_addr is not null
),

domains as (
    select distinct lower(split_part(address, '@', 2)) as domain
    from addresses
    where address like '%_@_%'
),

suffixes as (
    select
        domain,
        array_to_string(list_slice(string_split(domain, '.'), i, 64), '.') as suffix
    from domains, range(1, 16) as t(i)
    where i <= len(string_split(domain, '.'))
),

classes as (
    select
        s.domain,
        case
            when bool_or(o.domain is not null) then 'official'
            -- services that send registration mail (facebookmail.com is on the free-mail
            -- list) are not anyone's mailbox: never "public" counterparts
            when bool_or(g.domain is not null) then 'other'
            when bool_or(p.domain is not null) then 'public'
            else 'other'
        end as domain_class,
        bool_or(g.domain is not null) as registration_sender
    from suffixes s
    left join official_domains o on o.domain = s.suffix
    left join public_domains p on p.domain = s.suffix
    left join registration_domains g on g.domain = s.suffix
    group by s.domain
),

final as (
    select
        a.*,
        coalesce(c.domain_class, 'other') as domain_class,
        coalesce(c.registration_sender, false) as registration_sender
    from addresses a
    left join classes c on c.domain = lower(split_part(a.address, '@', 2))
)

select * from final
